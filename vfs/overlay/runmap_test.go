package overlay

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestRunMapModel applies random range sets to a runMap and to a per-block model and checks
// get, between and the invariants (sorted, disjoint, coalesced, no Absent run).
func TestRunMapModel(t *testing.T) {
	const n = 400
	rng := rand.New(rand.NewPCG(5, 6))
	m := newRunMap(nil)
	var model [n]BlockState
	for step := range 5000 {
		first := rng.Int64N(n)
		end := first + 1 + rng.Int64N(min(n-first, 1+int64(rng.IntN(2))*60))
		st := BlockState(rng.IntN(4))
		m.set(first, end, st)
		for i := first; i < end; i++ {
			model[i] = st
		}
		runs := m.all()
		for k, r := range runs {
			if r.State == Absent || r.First >= r.End || k > 0 && (runs[k-1].End > r.First ||
				runs[k-1].End == r.First && runs[k-1].State == r.State) {
				t.Fatalf("step %d: set(%d, %d, %v): runs %v", step, first, end, st, runs)
			}
		}
		for i := range int64(n) {
			if m.get(i) != model[i] {
				t.Fatalf("step %d: block %d is %v, want %v (runs %v)", step, i, m.get(i), model[i], runs)
			}
		}
		a := rng.Int64N(n)
		b := a + 1 + rng.Int64N(n-a)
		pos := a
		for _, r := range m.between(a, b) {
			if r.First != pos || r.End > b || r.End <= r.First {
				t.Fatalf("step %d: between(%d, %d) = %v", step, a, b, m.between(a, b))
			}
			for i := r.First; i < r.End; i++ {
				if model[i] != r.State {
					t.Fatalf("step %d: between(%d, %d): block %d in run %v is %v", step, a, b, i, r, model[i])
				}
			}
			pos = r.End
		}
		if pos != b {
			t.Fatalf("step %d: between(%d, %d) ends at %d", step, a, b, pos)
		}
	}
}

// BenchmarkScatteredBlocks sets n random single blocks (never adjacent: every run a block), the
// worst case of a run map, against the per-block map the overlay kept before.
func BenchmarkScatteredBlocks(b *testing.B) {
	for _, n := range []int{10_000, 200_000} {
		idx := rand.New(rand.NewPCG(1, 2)).Perm(n)
		b.Run(fmt.Sprint("runMap/", n), func(b *testing.B) {
			for range b.N {
				m := newRunMap(nil)
				for _, i := range idx {
					m.set(int64(2*i), int64(2*i+1), Data)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/block")
		})
		b.Run(fmt.Sprint("map/", n), func(b *testing.B) {
			for range b.N {
				m := map[int64]BlockState{}
				for _, i := range idx {
					m[int64(2*i)] = Data
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/block")
		})
	}
}
