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
		{"Runs", testRuns},
		{"RunModel", testRunModel},
		{"ManyRuns", testManyRuns},
		{"InvalidRun", testInvalidRun},
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

// commit commits one-block runs: the block map up, in index order.
func (c *suite) commit(t *testing.T, l overlay.Layout, up map[int64]overlay.BlockState) uint64 {
	t.Helper()
	return c.commitRuns(t, l, single(up))
}

func (c *suite) commitRuns(t *testing.T, l overlay.Layout, up []overlay.Run) uint64 {
	t.Helper()
	gen, err := c.ms.Commit(ctx, l, up)
	if err != nil {
		t.Fatalf("Commit(%+v, %d runs %s): %v", l, len(up), showRuns(up), err)
	}
	return gen
}

// single returns the blocks of m as one-block runs in index order (Absent ones included).
func single(m map[int64]overlay.BlockState) []overlay.Run {
	var out []overlay.Run
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, overlay.Run{First: k, End: k + 1, State: m[k]})
	}
	return out
}

// runsOf returns the runs Load must report for the block map m: the blocks not Absent, sorted
// and coalesced.
func runsOf(m map[int64]overlay.BlockState) []overlay.Run {
	var out []overlay.Run
	for _, k := range slices.Sorted(maps.Keys(m)) {
		st := m[k]
		if st == overlay.Absent {
			continue
		}
		if n := len(out); n > 0 && out[n-1].End == k && out[n-1].State == st {
			out[n-1].End++
			continue
		}
		out = append(out, overlay.Run{First: k, End: k + 1, State: st})
	}
	return out
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
	c.expectRuns(t, what, l, runsOf(blocks), gen)
}

// expectRuns checks the store's Load against a layout, runs (sorted, coalesced) and generation.
func (c *suite) expectRuns(t *testing.T, what string, l overlay.Layout, runs []overlay.Run, gen uint64) {
	t.Helper()
	if err := equal(c.load(t), l, runs, gen); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func equal(got overlay.Snapshot, l overlay.Layout, runs []overlay.Run, gen uint64) error {
	if got.Layout != l {
		return fmt.Errorf("Load: layout %+v, want %+v", got.Layout, l)
	}
	if got.Generation != gen {
		return fmt.Errorf("Load: generation %d, want %d", got.Generation, gen)
	}
	if !slices.Equal(got.Runs, runs) {
		return fmt.Errorf("Load: %d runs %s, want %d runs %s", len(got.Runs), showRuns(got.Runs), len(runs), showRuns(runs))
	}
	return nil
}

// showRuns prints runs, the first few only.
func showRuns(runs []overlay.Run) string {
	s := "{"
	for i, r := range runs {
		if i == 8 {
			s += " …"
			break
		}
		if i > 0 {
			s += " "
		}
		s += fmt.Sprintf("[%d,%d):%v", r.First, r.End, r.State)
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
	up := []overlay.Run{{First: 1, End: 2, State: overlay.Data}, {First: 2, End: 3, State: overlay.Zeroed}}
	c.commitRuns(t, lay, up)
	up[0].State = overlay.Trimmed
	up[1].End = 9
	_ = append(up[:1], overlay.Run{First: 9, End: 10, State: overlay.Data})
	want := map[int64]overlay.BlockState{1: overlay.Data, 2: overlay.Zeroed}
	c.expect(t, "after changing the committed updates map", lay, want, 1)

	snap := c.load(t)
	if len(snap.Runs) != 2 {
		t.Fatalf("Load returned runs %s", showRuns(snap.Runs))
	}
	snap.Runs[0].State = overlay.Zeroed
	snap.Runs[1].End = 7
	snap.Runs = append(snap.Runs[:1], overlay.Run{First: 9, End: 10, State: overlay.Data})
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
		if e := equal(snap, lay, runsOf(want), 1); e != nil {
			t.Fatalf("Load with a cancelled context succeeded with the wrong answer: %v", e)
		}
	}

	up := map[int64]overlay.BlockState{}
	for i := range int64(1000) {
		up[i] = overlay.BlockState(1 + i%3)
	}
	up[1] = overlay.Absent
	gen, err := c.ms.Commit(cctx, lay, single(up))
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
	gen, err := c.ms.Commit(ctx, lay, single(map[int64]overlay.BlockState{2: overlay.Data, 3: bad}))
	if err != nil {
		t.Logf("Commit of state %v refused: %v", bad, err)
		c.expect(t, "after a refused Commit", lay, map[int64]overlay.BlockState{1: overlay.Data}, 1)
		return
	}
	snap, err := c.ms.Load(ctx)
	if err != nil {
		t.Fatalf("Commit of state %v succeeded (generation %d), then Load fails: %v", bad, gen, err)
	}
	if err := equal(snap, lay, []overlay.Run{{First: 1, End: 3, State: overlay.Data}, {First: 3, End: 4, State: bad}}, 2); err != nil {
		t.Fatalf("Commit of state %v succeeded: %v", bad, err)
	}
}

// r is shorthand for a run.
func r(first, end int64, st overlay.BlockState) overlay.Run {
	return overlay.Run{First: first, End: end, State: st}
}

// testRuns: a run of any length is one run in the store, whatever it replaces, and runs are
// split, merged and deleted per block.
func testRuns(t *testing.T, c *suite) {
	all := lay.Size / lay.BlockSize // 16 Mi blocks
	c.commitRuns(t, lay, []overlay.Run{r(0, all, overlay.Zeroed)})
	c.expectRuns(t, "after zeroing every block", lay, []overlay.Run{r(0, all, overlay.Zeroed)}, 1)

	// Runs inside, across and at the edges of a run split it.
	c.commitRuns(t, lay, []overlay.Run{r(10, 20, overlay.Data), r(0, 1, overlay.Trimmed), r(all-5, all, overlay.Absent)})
	c.expectRuns(t, "after splitting", lay, []overlay.Run{r(0, 1, overlay.Trimmed), r(1, 10, overlay.Zeroed),
		r(10, 20, overlay.Data), r(20, all-5, overlay.Zeroed)}, 2)

	// Later runs of one Commit win over earlier ones; equal neighbours coalesce.
	c.commitRuns(t, lay, []overlay.Run{r(5, 15, overlay.Trimmed), r(12, 30, overlay.Data), r(0, 5, overlay.Trimmed),
		r(29, 31, overlay.Absent), r(31, 40, overlay.Data)})
	c.expectRuns(t, "after overlapping runs", lay, []overlay.Run{r(0, 12, overlay.Trimmed), r(12, 29, overlay.Data),
		r(31, 40, overlay.Data), r(40, all-5, overlay.Zeroed)}, 3)

	// Filling the gap merges with both neighbours.
	c.commitRuns(t, lay, []overlay.Run{r(29, 31, overlay.Data)})
	c.expectRuns(t, "after filling a gap", lay, []overlay.Run{r(0, 12, overlay.Trimmed), r(12, 40, overlay.Data),
		r(40, all-5, overlay.Zeroed)}, 4)

	// One run over many replaces them all; one-block runs in order coalesce.
	c.commitRuns(t, lay, []overlay.Run{r(3, all-100, overlay.Trimmed)})
	c.expectRuns(t, "after one run over all", lay, []overlay.Run{r(0, all-100, overlay.Trimmed), r(all-100, all-5, overlay.Zeroed)}, 5)
	var up []overlay.Run
	for i := int64(1000); i < 1100; i++ {
		up = append(up, r(i, i+1, overlay.Data))
	}
	c.commitRuns(t, lay, up)
	want := []overlay.Run{r(0, 1000, overlay.Trimmed), r(1000, 1100, overlay.Data), r(1100, all-100, overlay.Trimmed), r(all-100, all-5, overlay.Zeroed)}
	c.expectRuns(t, "after one-block runs", lay, want, 6)
	c.ms = c.reopen(t)
	c.expectRuns(t, "after reopening", lay, want, 6)
	c.commitRuns(t, lay, []overlay.Run{r(0, all, overlay.Absent)})
	c.expectRuns(t, "after deleting every block", lay, nil, 7)
}

// testRunModel applies random commits of random runs to the store and to a block map model.
func testRunModel(t *testing.T, c *suite) {
	rng := rand.New(rand.NewPCG(21, 22))
	model := map[int64]overlay.BlockState{}
	const blocks = 3000
	for step := range 60 {
		var up []overlay.Run
		for range 1 + rng.IntN(40) {
			first := rng.Int64N(blocks)
			n := 1 + rng.Int64N(5)
			if rng.IntN(8) == 0 {
				n = 1 + rng.Int64N(blocks-first)
			}
			st := overlay.BlockState(rng.IntN(4))
			up = append(up, r(first, min(blocks, first+n), st))
			for i := first; i < min(blocks, first+n); i++ {
				model[i] = st
			}
		}
		if got := c.commitRuns(t, lay, up); got != uint64(step+1) {
			t.Fatalf("step %d: Commit returned generation %d", step, got)
		}
		if step%10 == 9 {
			c.ms = c.reopen(t)
		}
		c.expect(t, fmt.Sprintf("step %d", step), lay, model, uint64(step+1))
	}
}

// testManyRuns: a Commit of many runs over many runs, as a Flush after scattered writes and a
// zero of the disk makes (an implementation may split it into several transactions: it must
// still apply whole and advance the generation once).
func testManyRuns(t *testing.T, c *suite) {
	model := map[int64]overlay.BlockState{}
	for i := int64(0); i < 6000; i += 3 {
		model[i] = overlay.BlockState(1 + i%3)
		model[i+1] = overlay.Absent
	}
	if gen := c.commit(t, lay, model); gen != 1 {
		t.Fatalf("Commit returned generation %d, want 1", gen)
	}
	c.expect(t, "after many one-block runs", lay, model, 1)
	if gen := c.commitRuns(t, lay, []overlay.Run{r(2, 5000, overlay.Zeroed), r(5500, 5600, overlay.Absent)}); gen != 2 {
		t.Fatalf("Commit returned generation %d, want 2", gen)
	}
	for i := int64(2); i < 5000; i++ {
		model[i] = overlay.Zeroed
	}
	for i := int64(5500); i < 5600; i++ {
		delete(model, i)
	}
	c.expect(t, "after a run over many", lay, model, 2)
	c.ms = c.reopen(t)
	c.expect(t, "after reopening", lay, model, 2)
}

// testInvalidRun: runs that name no blocks are refused, and nothing of their Commit is applied.
func testInvalidRun(t *testing.T, c *suite) {
	c.commit(t, lay, map[int64]overlay.BlockState{1: overlay.Data})
	for _, bad := range []overlay.Run{r(5, 5, overlay.Data), r(7, 6, overlay.Zeroed), r(-1, 3, overlay.Trimmed)} {
		if _, err := c.ms.Commit(ctx, lay, []overlay.Run{r(2, 3, overlay.Data), bad}); err == nil {
			t.Errorf("Commit of run [%d, %d) succeeded", bad.First, bad.End)
		}
	}
	c.expect(t, "after refused Commits", lay, map[int64]overlay.BlockState{1: overlay.Data}, 1)
}
