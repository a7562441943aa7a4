package vsphere

import (
	"context"
	"net/url"
	"testing"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/event"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/h2kvm/h2kvm/vfs/source"
	"github.com/h2kvm/h2kvm/vfs/source/datastore"
	"github.com/h2kvm/h2kvm/vfs/source/httpsrc"
	"github.com/h2kvm/h2kvm/vfs/source/vsession"
)

// loginCounter counts the logins the server records (UserLoginSessionEvent), asked through a
// session of its own.
func loginCounter(t *testing.T, s *sim) func() int {
	t.Helper()
	ctx := context.Background()
	u := &url.URL{Scheme: "https", Host: s.host(), Path: "/sdk", User: url.UserPassword(testUser, testPass)}
	oc, err := govmomi.NewClient(ctx, u, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { oc.Logout(context.Background()) })
	m := event.NewManager(oc.Client)
	return func() int {
		t.Helper()
		evs, err := m.QueryEvents(ctx, types.EventFilterSpec{EventTypeId: []string{"UserLoginSessionEvent"}})
		if err != nil {
			t.Fatal(err)
		}
		return len(evs)
	}
}

// TestOneLoginForResolveAndRead resolves a VM and reads its disk with one session: the
// resolver's, handed to the datastore opener. Without it the same work logs in twice.
func TestOneLoginForResolveAndRead(t *testing.T) {
	s := startSim(t)
	ctx := context.Background()
	logins := loginCounter(t, s)

	// Two sessions: Resolve's own, then the opener's.
	before := logins()
	vm, err := Resolve(ctx, s.loc("/DC0/vm/"+vmName), s.opts())
	if err != nil {
		t.Fatal(err)
	}
	o, err := datastore.NewOpener(ctx, vm.Disks[0].Source, datastore.Options{Password: testPass, KeepAlive: -1,
		HTTP: httpsrc.Options{TLS: httpsrc.TLSOptions{Thumbprints: []string{s.thumb}}}})
	if err != nil {
		t.Fatal(err)
	}
	readDisk(t, s, o, vm.Disks[0].Source)
	o.Close()
	if n := logins() - before; n != 2 {
		t.Fatalf("resolve, then read with the opener's own session: %d logins, want 2", n)
	}

	// One session: the resolver's, given to the opener.
	before = logins()
	l, err := ParseLocation(s.loc("/DC0/vm/" + vmName))
	if err != nil {
		t.Fatal(err)
	}
	c, err := Login(ctx, l, s.opts())
	if err != nil {
		t.Fatal(err)
	}
	vm, err = c.Resolve(ctx, l, s.opts())
	if err != nil {
		t.Fatal(err)
	}
	o, err = datastore.NewOpener(ctx, vm.Disks[0].Source, datastore.Options{Session: c.Session()})
	if err != nil {
		t.Fatal(err)
	}
	readDisk(t, s, o, vm.Disks[0].Source)
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if n := logins() - before; n != 1 {
		t.Fatalf("resolve and read with the resolver's session: %d logins, want 1", n)
	}
	// The opener left the session to its owner.
	if _, err := c.List(ctx, l); err != nil {
		t.Fatalf("the resolver's session after the opener closed: %v", err)
	}
	if err := c.Logout(ctx, Options{}); err != nil {
		t.Fatal(err)
	}

	// The way migrate does it: Resolve leaves its session on a shelf, and source.Open of a
	// disk (the daemon's datastore opener) takes it from there.
	before = logins()
	shelf := vsession.NewShelf()
	opt := s.opts()
	opt.Sessions = shelf
	vm, err = Resolve(ctx, s.loc("/DC0/vm/"+vmName), opt)
	if err != nil || shelf.Len() != 1 {
		t.Fatalf("resolve with a shelf: %v, %d sessions kept", err, shelf.Len())
	}
	so, name, err := source.Open(ctx, vm.Disks[0].Source, source.Config{TLS: opt.TLS, VSphereSessions: shelf})
	if err != nil {
		t.Fatalf("source.Open with the shelf (and no password): %v", err)
	}
	readDisk(t, s, so.(*datastore.Opener), name)
	so.Close()
	if n := logins() - before; n != 1 {
		t.Fatalf("resolve and source.Open with a shelf: %d logins, want 1", n)
	}
	sess := shelf.Get(s.host(), "")
	if sess == nil {
		t.Fatal("the shelf lost the session")
	}
	if err := shelf.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := sess.Check(ctx); err == nil {
		t.Error("the session is still valid after the shelf closed")
	}
}
