package overlay

import (
	"github.com/google/btree"
)

// runMap is a block map kept as runs: a B-tree of non-overlapping, coalesced runs ordered by
// first block, none Absent (a block in no run is Absent). get, set and between cost
// O(log runs) plus the runs they touch, so a whole-disk zero is one run and scattered writes
// over a fragmented map stay cheap. Not safe for concurrent use: the Overlay guards it with mu
// (readers may share it).
type runMap struct {
	t *btree.BTreeG[Run]
}

// runDegree is the B-tree's degree: nodes of up to 63 runs of 24 bytes.
const runDegree = 32

func byFirst(a, b Run) bool { return a.First < b.First }

// newRunMap returns the map of runs, which must be sorted and not overlap; it coalesces them.
func newRunMap(runs []Run) *runMap {
	m := &runMap{t: btree.NewG(runDegree, byFirst)}
	var last Run
	for _, r := range runs {
		if r.State == Absent || r.First >= r.End {
			continue
		}
		if last.State != Absent && last.End == r.First && last.State == r.State {
			last.End = r.End
		} else {
			last = r
		}
		m.t.ReplaceOrInsert(last)
	}
	return m
}

// pred returns the run with the largest First <= i.
func (m *runMap) pred(i int64) (Run, bool) {
	var out Run
	ok := false
	m.t.DescendLessOrEqual(Run{First: i}, func(r Run) bool { out, ok = r, true; return false })
	return out, ok
}

// get returns the state of block i.
func (m *runMap) get(i int64) BlockState {
	if r, ok := m.pred(i); ok && r.End > i {
		return r.State
	}
	return Absent
}

// set gives blocks [first, end) state st.
func (m *runMap) set(first, end int64, st BlockState) {
	if first >= end {
		return
	}
	// s are the runs that overlap or touch [first, end), in order.
	from := first
	if p, ok := m.pred(first - 1); ok && p.End >= first { // it contains or touches first
		from = p.First
	}
	var s []Run
	m.t.AscendGreaterOrEqual(Run{First: from}, func(r Run) bool {
		if r.First > end {
			return false
		}
		s = append(s, r)
		return true
	})
	nf, ne := first, end
	var left, right Run // pieces of other states kept at the edges (Absent: none)
	if len(s) > 0 && s[0].First < first {
		if s[0].State == st {
			nf = s[0].First
		} else {
			left = Run{s[0].First, first, s[0].State}
		}
	}
	if k := len(s) - 1; k >= 0 && s[k].End > end {
		if s[k].State == st {
			ne = s[k].End
		} else {
			right = Run{end, s[k].End, s[k].State}
		}
	}
	for _, r := range s {
		m.t.Delete(r)
	}
	for _, r := range []Run{left, {nf, ne, st}, right} {
		if r.State != Absent {
			m.t.ReplaceOrInsert(r)
		}
	}
}

// between returns the states of blocks [first, end) as runs clipped to the range, Absent gaps
// included, coalesced.
func (m *runMap) between(first, end int64) []Run {
	var out []Run
	add := func(a, b int64, st BlockState) {
		if a >= b {
			return
		}
		if n := len(out); n > 0 && out[n-1].State == st && out[n-1].End == a {
			out[n-1].End = b
			return
		}
		out = append(out, Run{a, b, st})
	}
	pos, from := first, first
	if p, ok := m.pred(first); ok && p.End > first {
		from = p.First
	}
	m.t.AscendGreaterOrEqual(Run{First: from}, func(r Run) bool {
		if r.First >= end {
			return false
		}
		add(pos, max(pos, r.First), Absent)
		pos = max(pos, r.First)
		add(pos, min(end, r.End), r.State)
		pos = min(end, r.End)
		return true
	})
	add(pos, end, Absent)
	return out
}

// all returns the runs in order.
func (m *runMap) all() []Run {
	out := make([]Run, 0, m.t.Len())
	m.t.Ascend(func(r Run) bool { out = append(out, r); return true })
	return out
}

// blocks returns the number of blocks in state st (not Absent).
func (m *runMap) blocks(st BlockState) int64 {
	var n int64
	m.t.Ascend(func(r Run) bool {
		if r.State == st {
			n += r.Len()
		}
		return true
	})
	return n
}
