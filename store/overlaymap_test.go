package store_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"runtime"
	"slices"
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

var errCrash = errors.New("crash between transactions")

// TestOverlayMapInterruptedCommit: a Commit split into transactions and stopped after the
// first leaves every block in its old or new state and the old generation; committing the
// same updates again completes it.
func TestOverlayMapInterruptedCommit(t *testing.T) {
	ctx := context.Background()
	s := newReopenable(t).s
	l := overlay.Layout{BlockSize: 4096, Size: 1 << 30}
	var old, up []overlay.Run
	for i := int64(0); i < 400; i += 2 {
		old = append(old, overlay.Run{First: i, End: i + 1, State: overlay.Data})
		up = append(up, overlay.Run{First: i + 1, End: i + 2, State: overlay.Trimmed})
	}
	up = append(up, overlay.Run{First: 100, End: 300, State: overlay.Zeroed})
	model := func(runs []overlay.Run) [400]overlay.BlockState {
		var m [400]overlay.BlockState
		for _, r := range runs {
			for i := r.First; i < min(400, r.End); i++ {
				m[i] = r.State
			}
		}
		return m
	}
	before, after := model(old), model(append(slices.Clone(old), up...))
	m := s.OverlayMap("vm").WithTxRecords(8)
	if _, err := m.Commit(ctx, l, old); err != nil {
		t.Fatal(err)
	}
	if _, err := m.FailAfterTx(1, errCrash).Commit(ctx, l, up); !errors.Is(err, errCrash) {
		t.Fatalf("interrupted Commit: %v", err)
	}
	snap, err := m.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Generation != 1 {
		t.Errorf("generation %d after an interrupted Commit, want 1", snap.Generation)
	}
	got := model(snap.Runs)
	var changed, kept int
	for i := range got {
		switch {
		case got[i] == after[i] && got[i] != before[i]:
			changed++
		case got[i] == before[i] && got[i] != after[i]:
			kept++
		case got[i] != before[i]:
			t.Fatalf("block %d is %v, neither %v (before) nor %v (after)", i, got[i], before[i], after[i])
		}
	}
	if changed == 0 || kept == 0 {
		t.Fatalf("interrupted Commit changed %d blocks and left %d: not a partial commit", changed, kept)
	}
	t.Logf("interrupted Commit applied to %d blocks, not to %d", changed, kept)
	m = s.OverlayMap("vm").WithTxRecords(8)
	if gen, err := m.Commit(ctx, l, up); err != nil || gen != 2 {
		t.Fatalf("Commit again: generation %d, %v", gen, err)
	}
	if snap, err = m.Load(ctx); err != nil || model(snap.Runs) != after {
		t.Fatalf("after committing again: %v, %v", snap.Runs, err)
	}
}

// TestOverlayInterruptedFlush: an overlay whose Flush stops between two transactions of its
// Commit, reopened as after a crash, reads each block as it was after the last completed
// Flush or as the interrupted one would have left it (the MapStore crash contract).
func TestOverlayInterruptedFlush(t *testing.T) {
	const size = 128 * overlay.DefaultBlockSize
	const bsz = overlay.DefaultBlockSize
	ctx := context.Background()
	dir := t.TempDir()
	s := openStore(t, filepath.Join(dir, "state.db"))
	base := vfs.NewMemDevice(size)
	for i := int64(0); i < size/bsz; i++ {
		base.WriteAt(ctx, bytes.Repeat([]byte{byte(1 + i)}, 100), i*bsz+77)
	}
	path := filepath.Join(dir, "ov")
	m := s.OverlayMap("ov").WithTxRecords(4)
	o, err := overlay.Open(ctx, base, overlay.Config{Path: path, Map: m})
	if err != nil {
		t.Fatal(err)
	}
	read := func(o *overlay.Overlay) []byte {
		p := make([]byte, size)
		if _, err := o.ReadAt(ctx, p, 0); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for i := int64(0); i < size/bsz; i += 2 {
		o.WriteAt(ctx, bytes.Repeat([]byte{0xa0}, 5000), i*bsz+1000)
	}
	if err := o.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	flushed := read(o)
	if err := o.Zero(ctx, 0, size/2); err != nil {
		t.Fatal(err)
	}
	for i := int64(size / bsz / 2); i < size/bsz; i += 3 {
		o.WriteAt(ctx, bytes.Repeat([]byte{0xb0}, bsz), i*bsz)
	}
	if err := o.Trim(ctx, size*3/4, size/8); err != nil {
		t.Fatal(err)
	}
	later := read(o)
	m.FailAfterTx(1, errCrash)
	if err := o.Flush(ctx); !errors.Is(err, errCrash) {
		t.Fatalf("interrupted Flush: %v", err)
	}
	// The crash: o is abandoned, not closed, and the overlay opened again.
	o2, err := overlay.Open(ctx, base, overlay.Config{Path: path, Map: s.OverlayMap("ov")})
	if err != nil {
		t.Fatal(err)
	}
	defer o2.Close()
	if g := o2.Stats().Generation; g != 1 {
		t.Errorf("generation %d after an interrupted second Flush", g)
	}
	got := read(o2)
	var asFlushed, asLater int
	for b := int64(0); b < size; b += bsz {
		g, f, l := got[b:b+bsz], flushed[b:b+bsz], later[b:b+bsz]
		switch {
		case bytes.Equal(g, f) && bytes.Equal(g, l):
		case bytes.Equal(g, f):
			asFlushed++
		case bytes.Equal(g, l):
			asLater++
		default:
			t.Errorf("block %d reads neither as after the last Flush nor as after the interrupted one", b/bsz)
		}
	}
	if asFlushed == 0 || asLater == 0 {
		t.Errorf("%d blocks as flushed, %d as later: the Flush was not interrupted halfway", asFlushed, asLater)
	}
	t.Logf("after the crash: %d blocks read as after the last Flush, %d as after the interrupted one", asFlushed, asLater)
}

// TestOverlayMapLegacyBlocks: a map recorded one record per block by an older h2kvm loads as
// runs, and the first Commit converts it.
func TestOverlayMapLegacyBlocks(t *testing.T) {
	ctx := context.Background()
	r := newReopenable(t)
	const bsz, size = 4096, 1 << 20
	if err := store.PutLegacyBlocks(r.s, "old", bsz, size, 7, map[int64]byte{1: 1, 2: 1, 3: 2, 9: 3, 10: 3}); err != nil {
		t.Fatal(err)
	}
	want := []overlay.Run{{First: 1, End: 3, State: overlay.Data}, {First: 3, End: 4, State: overlay.Zeroed}, {First: 9, End: 11, State: overlay.Trimmed}}
	m := r.s.OverlayMap("old")
	snap, err := m.Load(ctx)
	if err != nil || snap.Generation != 7 || snap.Layout != (overlay.Layout{BlockSize: bsz, Size: size}) || !slices.Equal(snap.Runs, want) {
		t.Fatalf("legacy map loads as %+v, %v; want runs %v", snap, err, want)
	}
	if gen, err := m.Commit(ctx, snap.Layout, []overlay.Run{{First: 2, End: 10, State: overlay.Zeroed}}); err != nil || gen != 8 {
		t.Fatalf("Commit over a legacy map: generation %d, %v", gen, err)
	}
	r.restart(t)
	want = []overlay.Run{{First: 1, End: 2, State: overlay.Data}, {First: 2, End: 10, State: overlay.Zeroed}, {First: 10, End: 11, State: overlay.Trimmed}}
	if snap, err = r.s.OverlayMap("old").Load(ctx); err != nil || snap.Generation != 8 || !slices.Equal(snap.Runs, want) {
		t.Fatalf("after a Commit: %+v, %v; want runs %v", snap, err, want)
	}
	if n, err := store.OverlayRecords(ctx, r.s, "old"); err != nil || n != 2+1+len(want) {
		t.Errorf("%d records after converting (%v); want layout, generation, runs bucket and %d runs", n, err, len(want))
	}
}
