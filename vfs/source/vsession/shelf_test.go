package vsession

import (
	"context"
	"testing"
)

// TestShelf: sessions put on a shelf are found by host (and user), logged out at Close; lent
// ones stay logged in; a nil shelf is empty.
func TestShelf(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	var none *Shelf
	if none.Get(s.sim.Host(), "") != nil || none.Len() != 0 || none.Close(ctx) != nil {
		t.Fatal("a nil shelf is not empty")
	}
	put, lent := login(t, s.config()), login(t, s.config())
	sh := NewShelf()
	if sh.Get(s.sim.Host(), "") != nil {
		t.Fatal("an empty shelf returned a session")
	}
	sh.Lend(lent)
	sh.Put(put)
	if got := sh.Get(s.sim.Host(), testUser); got != lent {
		t.Errorf("Get by host and user = %p, want the first session %p", got, lent)
	}
	if sh.Get(s.sim.Host(), "someone-else") != nil || sh.Get("other.example:443", "") != nil {
		t.Error("Get matched another user or host")
	}
	if err := lent.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	if got := sh.Get(s.sim.Host(), ""); got != put {
		t.Errorf("after the first logged out, Get = %p, want %p", got, put)
	}
	again := login(t, s.config())
	sh.Lend(again)
	if err := sh.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := put.Check(ctx); err == nil {
		t.Error("a session put on the shelf is still valid after Close")
	}
	if err := again.Check(ctx); err != nil {
		t.Errorf("a lent session was logged out at Close: %v", err)
	}
	if sh.Len() != 0 {
		t.Errorf("%d sessions left after Close", sh.Len())
	}
}
