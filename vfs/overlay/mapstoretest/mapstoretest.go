package mapstoretest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/h2kvm/h2kvm/vfs/overlay"
)

// New returns an empty MapStore and a function that reopens it. reopen MUST release ms (close
// its database, say) and return a MapStore over the same persisted state: everything ms
// committed must be there. An in-memory fake that outlives its users may return ms itself.
// Resources are released with t.Cleanup.
type New func(t *testing.T) (ms overlay.MapStore, reopen func(t *testing.T) overlay.MapStore)

// Run runs the contract suite against the MapStores that newStore returns.
func Run(t *testing.T, newStore New) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, c *suite)
	}{
		{"Empty", testEmpty},
		{"CommitLoad", testCommitLoad},
		{"Generation", testGeneration},
		{"Layout", testLayout},
		{"NoAliasing", testNoAliasing},
		{"Clear", testClear},
		{"Reopen", testReopen},
		{"Model", testModel},
		{"Cancelled", testCancelled},
		{"InvalidState", testInvalidState},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ms, reopen := newStore(t)
			tc.fn(t, &suite{ms: ms, reopen: reopen})
		})
	}
}

type suite struct {
	ms     overlay.MapStore
	reopen func(t *testing.T) overlay.MapStore
}

var (
	ctx = context.Background()
	lay = overlay.Layout{BlockSize: 64 << 10, Size: 1 << 40}
)

func (c *suite) load(t *testing.T) overlay.Snapshot {
	t.Helper()
	snap, err := c.ms.Load(ctx)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return snap
}

func (c *suite) commit(t *testing.T, l overlay.Layout, up map[int64]overlay.BlockState) uint64 {
	t.Helper()
	gen, err := c.ms.Commit(ctx, l, up)
	if err != nil {
		t.Fatalf("Commit(%+v, %v): %v", l, up, err)
	}
	return gen
}

func (c *suite) clear(t *testing.T) {
	t.Helper()
	if err := c.ms.Clear(ctx); err != nil {
		t.Fatalf("Clear: %v", err)
	}
}

// expect checks the store's Load against a layout, blocks and generation.
func (c *suite) expect(t *testing.T, what string, l overlay.Layout, blocks map[int64]overlay.BlockState, gen uint64) {
	t.Helper()
	if err := equal(c.load(t), l, blocks, gen); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func equal(got overlay.Snapshot, l overlay.Layout, blocks map[int64]overlay.BlockState, gen uint64) error {
	if got.Layout != l {
		return fmt.Errorf("Load: layout %+v, want %+v", got.Layout, l)
	}
	if got.Generation != gen {
		return fmt.Errorf("Load: generation %d, want %d", got.Generation, gen)
	}
	if len(got.Blocks) != len(blocks) || !maps.Equal(got.Blocks, blocks) {
		return fmt.Errorf("Load: %d blocks %s, want %d blocks %s", len(got.Blocks), show(got.Blocks), len(blocks), show(blocks))
	}
	return nil
}

// show prints a block map in index order, the first few entries only.
func show(m map[int64]overlay.BlockState) string {
	keys := slices.Sorted(maps.Keys(m))
	s := "{"
	for i, k := range keys {
		if i == 8 {
			s += " …"
			break
		}
		if i > 0 {
			s += " "
		}
		s += fmt.Sprintf("%d:%v", k, m[k])
	}
	return s + "}"
}

func testEmpty(t *testing.T, c *suite) {
	c.expect(t, "fresh store", overlay.Layout{}, nil, 0)
	c.clear(t)
	c.clear(t)
	c.expect(t, "cleared fresh store", overlay.Layout{}, nil, 0)
}

func testCommitLoad(t *testing.T, c *suite) {
	last := lay.Size/lay.BlockSize - 1
	first := map[int64]overlay.BlockState{0: overlay.Data, 1: overlay.Zeroed, 5: overlay.Trimmed,
		1 << 33: overlay.Data, last: overlay.Zeroed}
	if gen := c.commit(t, lay, first); gen != 1 {
		t.Fatalf("first Commit returned generation %d, want 1", gen)
	}
	c.expect(t, "after one commit", lay, first, 1)

	// Absent deletes; deleting what is not there is a no-op; states change in place.
	second := map[int64]overlay.BlockState{1: overlay.Absent, 5: overlay.Data, 7: overlay.Absent,
		last: overlay.Trimmed, 2: overlay.Data}
	if gen := c.commit(t, lay, second); gen != 2 {
		t.Fatalf("second Commit returned generation %d, want 2", gen)
	}
	want := map[int64]overlay.BlockState{0: overlay.Data, 2: overlay.Data, 5: overlay.Data,
		1 << 33: overlay.Data, last: overlay.Trimmed}
	c.expect(t, "after two commits", lay, want, 2)

	// Deleting every block leaves an empty map that still has its layout and generation.
	all := map[int64]overlay.BlockState{}
	for k := range want {
		all[k] = overlay.Absent
	}
	c.commit(t, lay, all)
	c.expect(t, "after deleting every block", lay, nil, 3)
}

func testGeneration(t *testing.T, c *suite) {
	for want := uint64(1); want <= 25; want++ {
		var up map[int64]overlay.BlockState // nil, empty and real updates all count
		switch want % 3 {
		case 1:
			up = map[int64]overlay.BlockState{}
		case 2:
			up = map[int64]overlay.BlockState{int64(want): overlay.Data}
		}
		if gen := c.commit(t, lay, up); gen != want {
			t.Fatalf("Commit %d returned generation %d", want, gen)
		}
		if got := c.load(t).Generation; got != want {
			t.Fatalf("after Commit %d, Load says generation %d", want, got)
		}
	}
}

func testLayout(t *testing.T, c *suite) {
	blocks := map[int64]overlay.BlockState{3: overlay.Data}
	c.commit(t, lay, blocks)
	// An empty Commit still records the layout it is given; blocks are kept.
	other := overlay.Layout{BlockSize: 4096, Size: 12345 * 4096}
	c.commit(t, other, nil)
	c.expect(t, "after a commit with another layout", other, blocks, 2)
	c.commit(t, lay, map[int64]overlay.BlockState{4: overlay.Zeroed})
	c.expect(t, "after a commit with the first layout", lay, map[int64]overlay.BlockState{3: overlay.Data, 4: overlay.Zeroed}, 3)
}

func testNoAliasing(t *testing.T, c *suite) {
	up := map[int64]overlay.BlockState{1: overlay.Data, 2: overlay.Zeroed}
	c.commit(t, lay, up)
	up[1] = overlay.Trimmed
	up[9] = overlay.Data
	delete(up, 2)
	want := map[int64]overlay.BlockState{1: overlay.Data, 2: overlay.Zeroed}
	c.expect(t, "after changing the committed updates map", lay, want, 1)

	snap := c.load(t)
	if snap.Blocks == nil {
		t.Fatal("Load returned no blocks")
	}
	snap.Blocks[1] = overlay.Zeroed
	snap.Blocks[7] = overlay.Data
	delete(snap.Blocks, 2)
	snap.Layout.Size = 1
	c.expect(t, "after changing a loaded snapshot", lay, want, 1)
}

func testClear(t *testing.T, c *suite) {
	c.commit(t, lay, map[int64]overlay.BlockState{1: overlay.Data, 2: overlay.Zeroed})
	c.commit(t, lay, map[int64]overlay.BlockState{3: overlay.Trimmed})
	c.clear(t)
	c.expect(t, "after Clear", overlay.Layout{}, nil, 0)
	c.clear(t) // idempotent
	c.expect(t, "after a second Clear", overlay.Layout{}, nil, 0)
	// The map starts again: old blocks do not come back.
	if gen := c.commit(t, lay, map[int64]overlay.BlockState{5: overlay.Data}); gen != 1 {
		t.Fatalf("first Commit after Clear returned generation %d, want 1", gen)
	}
	c.expect(t, "after Clear and a commit", lay, map[int64]overlay.BlockState{5: overlay.Data}, 1)
}

func testReopen(t *testing.T, c *suite) {
	c.commit(t, lay, map[int64]overlay.BlockState{1: overlay.Data, 2: overlay.Zeroed, 3: overlay.Trimmed})
	c.commit(t, lay, map[int64]overlay.BlockState{2: overlay.Absent, 4: overlay.Data})
	want := map[int64]overlay.BlockState{1: overlay.Data, 3: overlay.Trimmed, 4: overlay.Data}
	c.ms = c.reopen(t)
	c.expect(t, "after reopening", lay, want, 2)
	if gen := c.commit(t, lay, map[int64]overlay.BlockState{1: overlay.Absent}); gen != 3 {
		t.Fatalf("Commit after reopening returned generation %d, want 3", gen)
	}
	delete(want, 1)
	c.ms = c.reopen(t)
	c.expect(t, "after a commit and reopening", lay, want, 3)
	c.clear(t)
	c.ms = c.reopen(t)
	c.expect(t, "after Clear and reopening", overlay.Layout{}, nil, 0)
}

// testModel applies random commits (sometimes clearing, sometimes reopening) to the store and to
// a model, and compares them.
func testModel(t *testing.T, c *suite) {
	rng := rand.New(rand.NewPCG(11, 12))
	model := map[int64]overlay.BlockState{}
	var gen uint64
	l := overlay.Layout{}
	for step := range 200 {
		switch r := rng.IntN(40); {
		case r == 0:
			c.clear(t)
			clear(model)
			gen, l = 0, overlay.Layout{}
		case r == 1:
			c.ms = c.reopen(t)
		default:
			l = lay
			up := map[int64]overlay.BlockState{}
			for range rng.IntN(300) {
				// A small index range, so blocks are often updated again.
				up[rng.Int64N(500)] = overlay.BlockState(rng.IntN(4))
			}
			got := c.commit(t, l, up)
			gen++
			if got != gen {
				t.Fatalf("step %d: Commit returned generation %d, want %d", step, got, gen)
			}
			for k, s := range up {
				if s == overlay.Absent {
					delete(model, k)
				} else {
					model[k] = s
				}
			}
		}
		if step%7 == 0 || step == 199 {
			c.expect(t, fmt.Sprintf("step %d", step), l, model, gen)
		}
	}
}

func testCancelled(t *testing.T, c *suite) {
	c.commit(t, lay, map[int64]overlay.BlockState{1: overlay.Data})
	want := map[int64]overlay.BlockState{1: overlay.Data}
	cctx, cancel := context.WithCancel(ctx)
	cancel()

	snap, err := c.ms.Load(cctx)
	switch {
	case err != nil && !errors.Is(err, context.Canceled):
		t.Fatalf("Load with a cancelled context: %v, want context.Canceled", err)
	case err == nil:
		if e := equal(snap, lay, want, 1); e != nil {
			t.Fatalf("Load with a cancelled context succeeded with the wrong answer: %v", e)
		}
	}

	up := map[int64]overlay.BlockState{}
	for i := range int64(1000) {
		up[i] = overlay.Zeroed
	}
	up[1] = overlay.Absent
	gen, err := c.ms.Commit(cctx, lay, up)
	switch {
	case err != nil && !errors.Is(err, context.Canceled):
		t.Fatalf("Commit with a cancelled context: %v, want context.Canceled", err)
	case err != nil:
		c.expect(t, "after a failed Commit with a cancelled context", lay, want, 1)
	default:
		if gen != 2 {
			t.Fatalf("Commit with a cancelled context succeeded with generation %d, want 2", gen)
		}
		want = map[int64]overlay.BlockState{}
		for k, s := range up {
			if s != overlay.Absent {
				want[k] = s
			}
		}
		c.expect(t, "after a Commit with a cancelled context", lay, want, 2)
	}
	gen = c.load(t).Generation

	switch err := c.ms.Clear(cctx); {
	case err != nil && !errors.Is(err, context.Canceled):
		t.Fatalf("Clear with a cancelled context: %v, want context.Canceled", err)
	case err != nil:
		c.expect(t, "after a failed Clear with a cancelled context", lay, want, gen)
	default:
		c.expect(t, "after a Clear with a cancelled context", overlay.Layout{}, nil, 0)
	}
}

func testInvalidState(t *testing.T, c *suite) {
	c.commit(t, lay, map[int64]overlay.BlockState{1: overlay.Data})
	bad := overlay.Trimmed + 1
	gen, err := c.ms.Commit(ctx, lay, map[int64]overlay.BlockState{2: overlay.Data, 3: bad})
	if err != nil {
		t.Logf("Commit of state %v refused: %v", bad, err)
		c.expect(t, "after a refused Commit", lay, map[int64]overlay.BlockState{1: overlay.Data}, 1)
		return
	}
	snap, err := c.ms.Load(ctx)
	if err != nil {
		t.Fatalf("Commit of state %v succeeded (generation %d), then Load fails: %v", bad, gen, err)
	}
	if err := equal(snap, lay, map[int64]overlay.BlockState{1: overlay.Data, 2: overlay.Data, 3: bad}, 2); err != nil {
		t.Fatalf("Commit of state %v succeeded: %v", bad, err)
	}
}
