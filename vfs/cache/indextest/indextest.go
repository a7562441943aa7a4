package indextest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/h2kvm/h2kvm/vfs/cache"
)

// New returns an empty Index and a function that reopens it. reopen MUST release ix (close its
// database, say) and return an Index over the same persisted state. An in-memory fake that
// outlives its users may return ix itself. Resources are released with t.Cleanup.
type New func(t *testing.T) (ix cache.Index, reopen func(t *testing.T) cache.Index)

// Run runs the contract suite against the indexes that newIndex returns.
func Run(t *testing.T, newIndex New) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, c *suite)
	}{
		{"Fresh", testFresh},
		{"MarkPresent", testMarkPresent},
		{"Touch", testTouch},
		{"Evict", testEvict},
		{"EmptyCalls", testEmptyCalls},
		{"Layout", testLayout},
		{"NoAliasing", testNoAliasing},
		{"Reopen", testReopen},
		{"Model", testModel},
		{"Cancelled", testCancelled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ix, reopen := newIndex(t)
			tc.fn(t, &suite{ix: ix, reopen: reopen})
		})
	}
}

type suite struct {
	ix     cache.Index
	reopen func(t *testing.T) cache.Index
}

var (
	ctx = context.Background()
	lay = cache.Layout{ChunkSize: 1 << 20, SourceSize: 1 << 40}
)

// lastChunk is the number of the last chunk under lay.
const lastChunk = 1<<20 - 1

func (c *suite) load(t *testing.T, l cache.Layout) []cache.ChunkInfo {
	t.Helper()
	cs, err := c.ix.Load(ctx, l)
	if err != nil {
		t.Fatalf("Load(%+v): %v", l, err)
	}
	return cs
}

func (c *suite) mark(t *testing.T, cs ...cache.ChunkInfo) {
	t.Helper()
	if err := c.ix.MarkPresent(ctx, cs); err != nil {
		t.Fatalf("MarkPresent(%v): %v", cs, err)
	}
}

func (c *suite) touch(t *testing.T, cs ...cache.ChunkInfo) {
	t.Helper()
	if err := c.ix.Touch(ctx, cs); err != nil {
		t.Fatalf("Touch(%v): %v", cs, err)
	}
}

func (c *suite) evict(t *testing.T, idx ...int64) {
	t.Helper()
	if err := c.ix.Evict(ctx, idx); err != nil {
		t.Fatalf("Evict(%v): %v", idx, err)
	}
}

// expect loads under l and checks the answer against want (in any order).
func (c *suite) expect(t *testing.T, what string, l cache.Layout, want ...cache.ChunkInfo) {
	t.Helper()
	if err := same(c.load(t, l), want); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func same(got, want []cache.ChunkInfo) error {
	byIndex := func(a, b cache.ChunkInfo) int { return cmp.Compare(a.Index, b.Index) }
	got, want = slices.SortedFunc(slices.Values(got), byIndex), slices.SortedFunc(slices.Values(want), byIndex)
	if slices.Equal(got, want) {
		return nil
	}
	for i := 0; i < min(len(got), len(want)); i++ {
		if got[i] != want[i] {
			return fmt.Errorf("Load: %d chunks, want %d; first difference: %+v, want %+v", len(got), len(want), got[i], want[i])
		}
	}
	if len(got) > len(want) {
		return fmt.Errorf("Load: %d chunks, want %d; extra %+v", len(got), len(want), got[len(want)])
	}
	return fmt.Errorf("Load: %d chunks, want %d; missing %+v", len(got), len(want), want[len(got)])
}

func testFresh(t *testing.T, c *suite) {
	c.expect(t, "fresh index", lay)
	c.expect(t, "fresh index loaded twice", lay)
}

func testMarkPresent(t *testing.T, c *suite) {
	c.load(t, lay)
	a := cache.ChunkInfo{Index: 0, Seq: 0}
	b := cache.ChunkInfo{Index: 3, Seq: 7, Priority: true}
	z := cache.ChunkInfo{Index: lastChunk, Seq: math.MaxUint64}
	c.mark(t, a, b, z)
	c.expect(t, "after MarkPresent", lay, a, b, z)
	// Marking again replaces Seq and Priority, both ways.
	a2 := cache.ChunkInfo{Index: 0, Seq: 99, Priority: true}
	b2 := cache.ChunkInfo{Index: 3, Seq: 1}
	d := cache.ChunkInfo{Index: 4, Seq: 100}
	c.mark(t, a2, b2, d)
	c.expect(t, "after marking chunks again", lay, a2, b2, z, d)
}

func testTouch(t *testing.T, c *suite) {
	c.load(t, lay)
	c.mark(t, cache.ChunkInfo{Index: 1, Seq: 1}, cache.ChunkInfo{Index: 2, Seq: 2, Priority: true}, cache.ChunkInfo{Index: 3, Seq: 3})
	c.touch(t, cache.ChunkInfo{Index: 1, Seq: 10, Priority: true}, cache.ChunkInfo{Index: 2, Seq: 20},
		cache.ChunkInfo{Index: 5, Seq: 50}, cache.ChunkInfo{Index: lastChunk, Seq: 60, Priority: true})
	c.expect(t, "after Touch", lay, cache.ChunkInfo{Index: 1, Seq: 10, Priority: true}, cache.ChunkInfo{Index: 2, Seq: 20},
		cache.ChunkInfo{Index: 3, Seq: 3})
	// An evicted chunk is not present: touching it does not bring it back.
	c.evict(t, 1)
	c.touch(t, cache.ChunkInfo{Index: 1, Seq: 11})
	c.expect(t, "after evicting and touching a chunk", lay, cache.ChunkInfo{Index: 2, Seq: 20}, cache.ChunkInfo{Index: 3, Seq: 3})
}

func testEvict(t *testing.T, c *suite) {
	c.load(t, lay)
	var all []cache.ChunkInfo
	for i := range int64(20) {
		all = append(all, cache.ChunkInfo{Index: i * 3, Seq: uint64(i), Priority: i%4 == 0})
	}
	c.mark(t, all...)
	c.evict(t, 0, 3, 4, 5, 30, lastChunk, 1<<30) // 4, 5, lastChunk and 1<<30 are not there
	var want []cache.ChunkInfo
	for _, ch := range all {
		if ch.Index != 0 && ch.Index != 3 && ch.Index != 30 {
			want = append(want, ch)
		}
	}
	c.expect(t, "after Evict", lay, want...)
	c.evict(t, 0, 3) // again: unknown now
	c.expect(t, "after evicting the same chunks again", lay, want...)
	var idx []int64
	for _, ch := range want {
		idx = append(idx, ch.Index)
	}
	c.evict(t, idx...)
	c.expect(t, "after evicting everything", lay)
	// Evicted chunks can be marked present again.
	c.mark(t, cache.ChunkInfo{Index: 6, Seq: 1000})
	c.expect(t, "after marking an evicted chunk", lay, cache.ChunkInfo{Index: 6, Seq: 1000})
}

func testEmptyCalls(t *testing.T, c *suite) {
	c.load(t, lay)
	c.mark(t, cache.ChunkInfo{Index: 8, Seq: 8})
	for _, call := range []func() error{
		func() error { return c.ix.MarkPresent(ctx, nil) },
		func() error { return c.ix.MarkPresent(ctx, []cache.ChunkInfo{}) },
		func() error { return c.ix.Touch(ctx, nil) },
		func() error { return c.ix.Evict(ctx, nil) },
		func() error { return c.ix.Evict(ctx, []int64{}) },
	} {
		if err := call(); err != nil {
			t.Fatalf("call with no chunks: %v", err)
		}
	}
	c.expect(t, "after calls with no chunks", lay, cache.ChunkInfo{Index: 8, Seq: 8})
}

func testLayout(t *testing.T, c *suite) {
	c.load(t, lay)
	c.mark(t, cache.ChunkInfo{Index: 1, Seq: 1}, cache.ChunkInfo{Index: 2, Seq: 2, Priority: true})
	c.expect(t, "same layout", lay, cache.ChunkInfo{Index: 1, Seq: 1}, cache.ChunkInfo{Index: 2, Seq: 2, Priority: true})

	otherChunk := cache.Layout{ChunkSize: lay.ChunkSize / 2, SourceSize: lay.SourceSize}
	c.expect(t, "Load with another chunk size", otherChunk)
	c.expect(t, "Load with the first layout after another chunk size", lay)

	c.mark(t, cache.ChunkInfo{Index: 5, Seq: 5})
	otherSize := cache.Layout{ChunkSize: lay.ChunkSize, SourceSize: lay.SourceSize + 1}
	c.expect(t, "Load with another source size", otherSize)
	c.mark(t, cache.ChunkInfo{Index: 6, Seq: 6})
	c.expect(t, "Load with the new layout again", otherSize, cache.ChunkInfo{Index: 6, Seq: 6})
	c.expect(t, "Load with the first layout after another source size", lay)
	c.expect(t, "Load with the first layout again", lay)
}

func testNoAliasing(t *testing.T, c *suite) {
	c.load(t, lay)
	in := []cache.ChunkInfo{{Index: 1, Seq: 1}, {Index: 2, Seq: 2}}
	c.mark(t, in...)
	in[0].Seq, in[1].Index = 100, 50
	want := []cache.ChunkInfo{{Index: 1, Seq: 1}, {Index: 2, Seq: 2}}
	c.expect(t, "after changing the slice given to MarkPresent", lay, want...)

	out := c.load(t, lay)
	if len(out) != 2 {
		t.Fatalf("Load: %v", out)
	}
	out[0].Seq, out[1].Priority = 77, true
	_ = append(out[:1], cache.ChunkInfo{Index: 9}) // overwrites out[1] in place
	c.expect(t, "after changing the slice Load returned", lay, want...)
}

func testReopen(t *testing.T, c *suite) {
	c.load(t, lay)
	c.mark(t, cache.ChunkInfo{Index: 1, Seq: 1}, cache.ChunkInfo{Index: 2, Seq: 2}, cache.ChunkInfo{Index: 3, Seq: 3, Priority: true})
	c.touch(t, cache.ChunkInfo{Index: 2, Seq: 20, Priority: true})
	c.evict(t, 1)
	want := []cache.ChunkInfo{{Index: 2, Seq: 20, Priority: true}, {Index: 3, Seq: 3, Priority: true}}
	c.ix = c.reopen(t)
	c.expect(t, "after reopening", lay, want...)

	// A layout change is durable too: the dropped records stay dropped.
	other := cache.Layout{ChunkSize: 4 << 20, SourceSize: 10 << 20}
	c.expect(t, "Load with another layout", other)
	c.mark(t, cache.ChunkInfo{Index: 2, Seq: 5})
	c.ix = c.reopen(t)
	c.expect(t, "after a layout change and reopening", other, cache.ChunkInfo{Index: 2, Seq: 5})
	c.ix = c.reopen(t)
	c.expect(t, "the first layout after reopening", lay)
}

// testModel runs random calls (and reopens) against the index and a model, and compares them.
func testModel(t *testing.T, c *suite) {
	rng := rand.New(rand.NewPCG(21, 22))
	layouts := []cache.Layout{lay, {ChunkSize: 256 << 10, SourceSize: 5<<20 + 777}}
	l := layouts[0]
	model := map[int64]cache.ChunkInfo{}
	c.load(t, l)
	random := func() []cache.ChunkInfo {
		cs := make([]cache.ChunkInfo, rng.IntN(40))
		seen := map[int64]bool{}
		for i := range cs {
			idx := rng.Int64N(200)
			for seen[idx] { // duplicates within one call are not part of the contract
				idx = rng.Int64N(200)
			}
			seen[idx] = true
			cs[i] = cache.ChunkInfo{Index: idx, Seq: rng.Uint64(), Priority: rng.IntN(3) == 0}
		}
		return cs
	}
	for step := range 300 {
		switch r := rng.IntN(50); {
		case r == 0: // a restart: the Cache loads first
			c.ix = c.reopen(t)
			fallthrough
		case r == 1: // a Load, sometimes under the other layout
			if nl := layouts[rng.IntN(2)]; nl != l {
				l = nl
				clear(model)
			}
			if err := same(c.load(t, l), values(model)); err != nil {
				t.Fatalf("step %d: %v", step, err)
			}
		case r < 22:
			cs := random()
			c.mark(t, cs...)
			for _, ch := range cs {
				model[ch.Index] = ch
			}
		case r < 38:
			cs := random()
			c.touch(t, cs...)
			for _, ch := range cs {
				if _, ok := model[ch.Index]; ok {
					model[ch.Index] = ch
				}
			}
		default:
			var idx []int64
			for _, ch := range random() {
				idx = append(idx, ch.Index)
				delete(model, ch.Index)
			}
			c.evict(t, idx...)
		}
		if step%10 == 0 || step == 299 {
			if err := same(c.load(t, l), values(model)); err != nil {
				t.Fatalf("step %d: %v", step, err)
			}
		}
	}
}

func values(m map[int64]cache.ChunkInfo) []cache.ChunkInfo {
	var out []cache.ChunkInfo
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

func testCancelled(t *testing.T, c *suite) {
	c.load(t, lay)
	base := []cache.ChunkInfo{{Index: 1, Seq: 1}, {Index: 2, Seq: 2}}
	c.mark(t, base...)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	// Each call either fails with context.Canceled and changes nothing, or does all its work;
	// want is updated to what the index must hold either way.
	want := slices.Clone(base)
	try := func(what string, err error, after []cache.ChunkInfo) {
		t.Helper()
		switch {
		case err != nil && !errors.Is(err, context.Canceled):
			t.Fatalf("%s with a cancelled context: %v, want context.Canceled", what, err)
		case err == nil:
			want = after
		}
		c.expect(t, "after "+what+" with a cancelled context", lay, want...)
	}

	var many []cache.ChunkInfo
	for i := range int64(500) {
		many = append(many, cache.ChunkInfo{Index: i + 10, Seq: uint64(i)})
	}
	try("MarkPresent", c.ix.MarkPresent(cctx, many), append(slices.Clone(want), many...))

	touched := slices.Clone(want)
	for i := range touched {
		touched[i].Seq += 1000
	}
	try("Touch", c.ix.Touch(cctx, touched), touched)

	var idx []int64
	for _, ch := range want[1:] {
		idx = append(idx, ch.Index)
	}
	try("Evict", c.ix.Evict(cctx, idx), want[:1])

	other := cache.Layout{ChunkSize: 4096, SourceSize: 4096 * 1000}
	cs, err := c.ix.Load(cctx, other)
	switch {
	case err != nil && !errors.Is(err, context.Canceled):
		t.Fatalf("Load with a cancelled context: %v, want context.Canceled", err)
	case err != nil:
		c.expect(t, "after a failed Load of another layout with a cancelled context", lay, want...)
	case len(cs) != 0:
		t.Fatalf("Load of another layout with a cancelled context returned %d chunks", len(cs))
	default:
		c.expect(t, "after a Load of another layout with a cancelled context", other)
	}
}
