package store_test

import (
	"context"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/h2kvm/h2kvm/store"
	"github.com/h2kvm/h2kvm/vfs"
	"github.com/h2kvm/h2kvm/vfs/overlay"
)

// holeBase is a sparse base device of any size that reads zeros and reports one Hole: a 4 TiB
// vfs.MemDevice would walk its 4 KiB map to answer Extents.
type holeBase struct{ size int64 }

func (b holeBase) Size() int64 { return b.size }

func (b holeBase) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	clear(p)
	return len(p), nil
}

func (b holeBase) Extents(ctx context.Context, off, length int64) ([]vfs.Extent, error) {
	return []vfs.Extent{{Off: off, Len: min(length, b.size-off), Kind: vfs.Hole}}, nil
}

// TestOverlayZeroWholeDisk zeroes a 4 TiB overlay (64 Mi blocks) in one Zero call over a few
// written blocks: the block map must cost memory and store records per run, not per block,
// and after a restart the disk must read zeros and report one Zero extent.
func TestOverlayZeroWholeDisk(t *testing.T) {
	const size = 4 << 40
	ctx := context.Background()
	dir := t.TempDir()
	r := &reopenable{path: filepath.Join(dir, "state.db")}
	r.open(t)
	t.Cleanup(func() { r.s.Close() })
	path := filepath.Join(dir, "ov")
	base := holeBase{size}
	o, err := overlay.Open(ctx, base, overlay.Config{Path: path, Map: r.s.OverlayMap("big")})
	if err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{0, 3 << 30, size/2 + 12345, size - 100} {
		if _, err := o.WriteAt(ctx, []byte("written before the zero"), off); err != nil {
			t.Fatal(err)
		}
	}
	if err := o.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if err := o.Zero(ctx, 0, size); err != nil {
		t.Fatal(err)
	}
	if err := o.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("zeroing %d blocks: heap grew by %d bytes, %d bytes allocated in all", int64(size)/overlay.DefaultBlockSize, grown, allocated)
	if grown > 10<<20 || allocated > 64<<20 {
		t.Errorf("zeroing 4 TiB: heap grew by %d MiB, %d MiB allocated; want under 10 and 64 MiB", grown>>20, allocated>>20)
	}
	if st := o.Stats(); st.ZeroedBlocks != size/overlay.DefaultBlockSize || st.DataBlocks != 0 || st.DirtyBlocks != 0 {
		t.Errorf("stats after zeroing the disk: %+v", st)
	}
	n, err := store.OverlayRecords(ctx, r.s, "big")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("store records of the overlay after the zero: %d", n)
	if n > 10 {
		t.Errorf("the overlay's map takes %d records in the store after zeroing the whole disk; want a few (one run)", n)
	}
	runtime.KeepAlive(o)
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}

	r.restart(t)
	o, err = overlay.Open(ctx, base, overlay.Config{Path: path, Map: r.s.OverlayMap("big")})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	buf := make([]byte, 100)
	for _, off := range []int64{0, 3 << 30, size/2 + 12345, size - 100} {
		if _, err := o.ReadAt(ctx, buf, off); err != nil {
			t.Fatal(err)
		}
		for _, c := range buf {
			if c != 0 {
				t.Fatalf("after reopen, %q at %d: want zeros", buf, off)
			}
		}
	}
	es, err := o.Extents(ctx, 0, size)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 1 || es[0] != (vfs.Extent{Off: 0, Len: size, Kind: vfs.Zero}) {
		t.Fatalf("after reopen, extents %+v; want one Zero extent of the whole disk", es)
	}
}
