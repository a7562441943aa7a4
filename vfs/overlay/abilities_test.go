package overlay_test

import (
	"context"
	"sync"
	"testing"

	"github.com/h2kvm/h2kvm/vfs"
	"github.com/h2kvm/h2kvm/vfs/overlay"
)

// prefetchBase is a base that records what it is asked to prefetch.
type prefetchBase struct {
	*vfs.MemDevice
	mu    sync.Mutex
	asked [][2]int64
}

func (b *prefetchBase) Prefetch(ctx context.Context, off, length int64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.asked = append(b.asked, [2]int64{off, off + length})
	return nil
}

func TestPrefetchSkipsOwnBlocks(t *testing.T) {
	ctx := t.Context()
	const bs = 64 << 10
	base := &prefetchBase{MemDevice: vfs.NewMemDevice(16 * bs)}
	o := open(t, base, overlay.Config{Map: &memMap{}, BlockSize: bs})
	if _, err := o.WriteAt(ctx, []byte("x"), 2*bs+5); err != nil { // block 2 copied up
		t.Fatal(err)
	}
	if err := o.Zero(ctx, 5*bs, 2*bs); err != nil { // blocks 5 and 6 zeroed in the map
		t.Fatal(err)
	}
	if err := o.Prefetch(ctx, 100, 10*bs); err != nil {
		t.Fatal(err)
	}
	want := [][2]int64{{100, 2 * bs}, {3 * bs, 5 * bs}, {7 * bs, 10*bs + 100}}
	if len(base.asked) != len(want) {
		t.Fatalf("base asked %v, want %v", base.asked, want)
	}
	for i := range want {
		if base.asked[i] != want[i] {
			t.Errorf("base asked %v, want %v", base.asked, want)
			break
		}
	}
	if err := o.Prefetch(ctx, 15*bs, 2*bs); err == nil {
		t.Error("prefetch past the end succeeded")
	}
}

func TestCanZeroFast(t *testing.T) {
	ctx := t.Context()
	const bs = 64 << 10
	base, _ := randomBase(t, 16*bs+1000, 3) // a short last block
	o := open(t, base, overlay.Config{Map: &memMap{}, BlockSize: bs})
	for _, c := range []struct {
		off, n int64
		want   bool
	}{
		{0, bs, true},
		{bs, 3 * bs, true},
		{16 * bs, 1000, true}, // the whole short last block
		{10, bs, false},       // partial first and last blocks
		{0, bs + 1, false},
		{0, 0, true},
		{16 * bs, 1001, false}, // past the end
	} {
		if got := o.CanZeroFast(c.off, c.n); got != c.want {
			t.Errorf("CanZeroFast(%d, %d) = %v, want %v", c.off, c.n, got, c.want)
		}
	}
	if err := o.Zero(ctx, 0, bs); err != nil {
		t.Fatal(err)
	}
	// Block 0 reads zeros already: a partial zero there only changes the map.
	if !o.CanZeroFast(10, bs-10) {
		t.Error("partial zero of a zeroed block is not fast")
	}
}
