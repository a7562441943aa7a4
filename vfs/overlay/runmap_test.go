package overlay

import (
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
		for k, r := range m.runs {
			if r.State == Absent || r.First >= r.End || k > 0 && (m.runs[k-1].End > r.First ||
				m.runs[k-1].End == r.First && m.runs[k-1].State == r.State) {
				t.Fatalf("step %d: set(%d, %d, %v): runs %v", step, first, end, st, m.runs)
			}
		}
		for i := range int64(n) {
			if m.get(i) != model[i] {
				t.Fatalf("step %d: block %d is %v, want %v (runs %v)", step, i, m.get(i), model[i], m.runs)
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
