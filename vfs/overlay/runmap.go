package overlay

import (
	"slices"
	"sort"
)

// runMap is a block map kept as runs: a sorted slice of non-overlapping, coalesced runs, none
// Absent (a block in no run is Absent). Lookups are binary searches; set replaces the runs it
// overlaps, so writing blocks in order (a copy, a zero of a whole disk) extends the last run
// in place. Not safe for concurrent use: the Overlay guards it with mu.
//
// A slice rather than a tree: set moves the runs after the change, which is cheap for the
// maps overlays have (thousands of runs) and stays correct, if slower, for very fragmented
// ones.
type runMap struct {
	runs []Run
}

// newRunMap returns the map of runs, which must be sorted and not overlap; it coalesces them.
func newRunMap(runs []Run) *runMap {
	m := &runMap{}
	for _, r := range runs {
		if r.State == Absent || r.First >= r.End {
			continue
		}
		if n := len(m.runs); n > 0 && m.runs[n-1].End == r.First && m.runs[n-1].State == r.State {
			m.runs[n-1].End = r.End
			continue
		}
		m.runs = append(m.runs, r)
	}
	return m
}

// get returns the state of block i.
func (m *runMap) get(i int64) BlockState {
	k := sort.Search(len(m.runs), func(k int) bool { return m.runs[k].End > i })
	if k < len(m.runs) && m.runs[k].First <= i {
		return m.runs[k].State
	}
	return Absent
}

// set gives blocks [first, end) state st.
func (m *runMap) set(first, end int64, st BlockState) {
	if first >= end {
		return
	}
	s := m.runs
	// s[i:j] are the runs that overlap or touch [first, end).
	i := sort.Search(len(s), func(k int) bool { return s[k].End >= first })
	j := sort.Search(len(s), func(k int) bool { return s[k].First > end })
	var repl [3]Run
	n := 0
	nf, ne := first, end
	if i < j && s[i].First < first {
		if s[i].State == st {
			nf = s[i].First
		} else {
			repl[n] = Run{s[i].First, first, s[i].State}
			n++
		}
	}
	var right *Run
	if i < j && s[j-1].End > end {
		if s[j-1].State == st {
			ne = s[j-1].End
		} else {
			right = &Run{end, s[j-1].End, s[j-1].State}
		}
	}
	if st != Absent {
		repl[n] = Run{nf, ne, st}
		n++
	}
	if right != nil {
		repl[n] = *right
		n++
	}
	m.runs = slices.Replace(s, i, j, repl[:n]...)
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
	pos := first
	for k := sort.Search(len(m.runs), func(k int) bool { return m.runs[k].End > first }); k < len(m.runs) && m.runs[k].First < end; k++ {
		r := m.runs[k]
		add(pos, max(pos, r.First), Absent)
		pos = max(pos, r.First)
		add(pos, min(end, r.End), r.State)
		pos = min(end, r.End)
	}
	add(pos, end, Absent)
	return out
}

// all returns a copy of the runs.
func (m *runMap) all() []Run { return slices.Clone(m.runs) }

// blocks returns the number of blocks in state st (not Absent).
func (m *runMap) blocks(st BlockState) int64 {
	var n int64
	for _, r := range m.runs {
		if r.State == st {
			n += r.Len()
		}
	}
	return n
}
