package store_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/h2kvm/h2kvm/store"
	"github.com/h2kvm/h2kvm/vfs/cache"
	"github.com/h2kvm/h2kvm/vfs/cache/indextest"
	"github.com/h2kvm/h2kvm/vfs/overlay"
	"github.com/h2kvm/h2kvm/vfs/overlay/mapstoretest"
)

// reopenable is a Store on a file that a test closes and opens again, as a daemon restart would.
type reopenable struct {
	path string
	s    *store.Store
}

func newReopenable(t *testing.T) *reopenable {
	t.Helper()
	r := &reopenable{path: filepath.Join(t.TempDir(), "state.db")}
	r.open(t)
	t.Cleanup(func() {
		if err := r.s.Check(context.Background()); err != nil {
			t.Error(err)
		}
		if err := r.s.Close(); err != nil {
			t.Error(err)
		}
	})
	return r
}

func (r *reopenable) open(t *testing.T) {
	t.Helper()
	s, err := store.Open(r.path, store.Options{LockTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	r.s = s
}

// restart closes the database (after checking its structure) and opens it again.
func (r *reopenable) restart(t *testing.T) {
	t.Helper()
	if err := r.s.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := r.s.Close(); err != nil {
		t.Fatal(err)
	}
	r.open(t)
}

// TestOverlayMapContract runs the MapStore contract suite against OverlayMap, with a neighbour
// overlay in the same database that must never be touched: with the default transaction size,
// and with transactions of a few records, so that most commits of the suite are split.
func TestOverlayMapContract(t *testing.T) {
	for _, n := range []int{store.DefaultOverlayTxRecords, 8} {
		t.Run(fmt.Sprint("tx", n), func(t *testing.T) {
			mapstoretest.Run(t, func(t *testing.T) (overlay.MapStore, func(*testing.T) overlay.MapStore) {
				r := newReopenable(t)
				ctx := context.Background()
				l := overlay.Layout{BlockSize: 4096, Size: 1 << 20}
				neighbour := []overlay.Run{{First: 0, End: 1, State: overlay.Data}, {First: 3, End: 9, State: overlay.Trimmed}}
				if _, err := r.s.OverlayMap("vm-disk1").Commit(ctx, l, neighbour); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() {
					snap, err := r.s.OverlayMap("vm-disk1").Load(ctx)
					if err != nil || snap.Generation != 1 || snap.Layout != l || !slices.Equal(snap.Runs, neighbour) {
						t.Errorf("neighbour overlay changed: %+v, %v", snap, err)
					}
				})
				return r.s.OverlayMap("vm-disk0").WithTxRecords(n), func(t *testing.T) overlay.MapStore {
					r.restart(t)
					return r.s.OverlayMap("vm-disk0").WithTxRecords(n)
				}
			})
		})
	}
}

// TestOverlayMapBatchRetry: a Commit that fails inside a shared bbolt batch makes bbolt run the
// other commits of the batch again; each must still advance its generation exactly once.
func TestOverlayMapBatchRetry(t *testing.T) {
	ctx := context.Background()
	s := newReopenable(t).s
	l := overlay.Layout{BlockSize: 4096, Size: 1 << 20}
	const maps, rounds = 6, 15
	var wg sync.WaitGroup
	for k := range maps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				gen, err := s.OverlayMap(fmt.Sprint("m", k)).Commit(ctx, l, []overlay.Run{{First: int64(2 * i), End: int64(2*i + 1), State: overlay.Data}})
				if err != nil || gen != uint64(i+1) {
					t.Errorf("map %d commit %d: generation %d, %v", k, i, gen, err)
				}
			}
		}()
		wg.Add(1)
		go func() { // bbolt refuses an empty bucket name: this commit fails in the batch
			defer wg.Done()
			for range rounds {
				if _, err := s.OverlayMap("").Commit(ctx, l, []overlay.Run{{First: 1, End: 2, State: overlay.Data}}); err == nil {
					t.Error("commit of an overlay with an empty name succeeded")
				}
			}
		}()
	}
	wg.Wait()
	for k := range maps {
		snap, err := s.OverlayMap(fmt.Sprint("m", k)).Load(ctx)
		if err != nil || snap.Generation != rounds || len(snap.Runs) != rounds {
			t.Errorf("map %d: generation %d, %d runs, %v; want %d, %d", k, snap.Generation, len(snap.Runs), err, rounds, rounds)
		}
	}
}

// TestOverlayMapLoadDuringCommit: the store allows every method concurrently, so a Load racing
// with commits of the same map sees the map after some whole number of commits (they are far
// below the transaction bound, so not split). Commit g replaces the blocks of commit g-1 by
// its own 25 blocks.
func TestOverlayMapLoadDuringCommit(t *testing.T) {
	ctx := context.Background()
	m := newReopenable(t).s.OverlayMap("vm")
	l := overlay.Layout{BlockSize: 4096, Size: 1 << 30}
	const commits, width = 60, 50
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				snap, err := m.Load(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				if err := commitShape(snap, width); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for g := int64(1); g <= commits; g++ {
		// Every other block, so that the commit is many runs.
		var up []overlay.Run
		up = append(up, overlay.Run{First: (g - 1) * width, End: g * width, State: overlay.Absent})
		for i := int64(0); i < width; i += 2 {
			up = append(up, overlay.Run{First: g*width + i, End: g*width + i + 1, State: overlay.BlockState(1 + g%3)})
		}
		if _, err := m.Commit(ctx, l, up); err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	wg.Wait()
}

// commitShape checks that snap holds exactly the blocks commit snap.Generation left.
func commitShape(snap overlay.Snapshot, width int64) error {
	g := int64(snap.Generation)
	var want []overlay.Run
	for i := int64(0); g > 0 && i < width; i += 2 {
		want = append(want, overlay.Run{First: g*width + i, End: g*width + i + 1, State: overlay.BlockState(1 + g%3)})
	}
	if !slices.Equal(snap.Runs, want) {
		return fmt.Errorf("generation %d: runs %v, want %v", g, snap.Runs, want)
	}
	return nil
}

// TestCacheIndexContract runs the Index contract suite against CacheIndex, with a neighbour
// cache in the same database that must never be touched.
func TestCacheIndexContract(t *testing.T) {
	indextest.Run(t, func(t *testing.T) (cache.Index, func(*testing.T) cache.Index) {
		r := newReopenable(t)
		ctx := context.Background()
		l := cache.Layout{ChunkSize: 1 << 20, SourceSize: 1 << 30}
		neighbour := []cache.ChunkInfo{{Index: 0, Seq: 1}, {Index: 1, Seq: 2, Priority: true}}
		nb := r.s.CacheIndex("https://esx/folder/b-flat.vmdk@etag1")
		if _, err := nb.Load(ctx, l); err != nil {
			t.Fatal(err)
		}
		if err := nb.MarkPresent(ctx, neighbour); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cs, err := r.s.CacheIndex("https://esx/folder/b-flat.vmdk@etag1").Load(ctx, l)
			if err != nil || !slices.Equal(cs, neighbour) {
				t.Errorf("neighbour cache changed: %+v, %v", cs, err)
			}
		})
		const id = "https://esx/folder/a-flat.vmdk@etag1"
		return r.s.CacheIndex(id), func(t *testing.T) cache.Index {
			r.restart(t)
			return r.s.CacheIndex(id)
		}
	})
}

// TestCacheIndexConcurrentCaches: the store allows every method concurrently, so caches used
// from their own goroutines (one Budget each) never see each other's records, and a cache whose
// layout changes drops only its own.
func TestCacheIndexConcurrentCaches(t *testing.T) {
	ctx := context.Background()
	s := newReopenable(t).s
	l := cache.Layout{ChunkSize: 1 << 20, SourceSize: 1 << 30}
	const caches, rounds = 6, 40
	var wg sync.WaitGroup
	for k := range caches {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ix := s.CacheIndex(fmt.Sprint("src", k))
			if _, err := ix.Load(ctx, l); err != nil {
				t.Error(err)
				return
			}
			for i := range int64(rounds) {
				c := cache.ChunkInfo{Index: i, Seq: uint64(k*1000) + uint64(i), Priority: k%2 == 0}
				if err := ix.MarkPresent(ctx, []cache.ChunkInfo{c, {Index: i + 1000, Seq: 1}}); err != nil {
					t.Error(err)
					return
				}
				if err := ix.Evict(ctx, []int64{i + 1000}); err != nil {
					t.Error(err)
					return
				}
				c.Seq++
				if err := ix.Touch(ctx, []cache.ChunkInfo{c}); err != nil {
					t.Error(err)
					return
				}
			}
			if k == 0 { // a new layout for this cache only
				if cs, err := ix.Load(ctx, cache.Layout{ChunkSize: 4096, SourceSize: 1 << 30}); err != nil || len(cs) != 0 {
					t.Errorf("cache 0 under a new layout: %d chunks, %v", len(cs), err)
				}
			}
		}()
	}
	wg.Wait()
	for k := 1; k < caches; k++ {
		cs, err := s.CacheIndex(fmt.Sprint("src", k)).Load(ctx, l)
		if err != nil || len(cs) != rounds {
			t.Fatalf("cache %d: %d chunks, %v; want %d", k, len(cs), err, rounds)
		}
		for i, c := range cs { // bbolt returns them by index
			want := cache.ChunkInfo{Index: int64(i), Seq: uint64(k*1000+i) + 1, Priority: k%2 == 0}
			if c != want {
				t.Fatalf("cache %d: chunk %+v, want %+v", k, c, want)
			}
		}
	}
}
