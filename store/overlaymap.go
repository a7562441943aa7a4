package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/h2kvm/h2kvm/vfs/overlay"
)

// DefaultOverlayTxRecords bounds the records one transaction of an overlay Commit puts or
// deletes (give or take a few per run): a Commit that changes more is split into several
// transactions, so that a commit of millions of scattered blocks does not build one
// transaction of millions of keys (bbolt holds a transaction's dirty pages in memory).
const DefaultOverlayTxRecords = 50_000

// bktRuns is the bucket of an overlay's runs of blocks; bktBlocks (one record per block) is
// what h2kvm stored before, read and converted on the first Commit.
var bktRuns = []byte("runs")

// OverlayMap is the block map of one export's overlay, stored under overlays/<export> as runs
// of blocks (see the schema in doc.go). It implements overlay.MapStore, including its split
// commits: a Commit is applied in transactions of at most maxRecords records each, the last
// one writing the generation.
type OverlayMap struct {
	s          *Store
	name       []byte
	maxRecords int
	// partDone, set by tests only, is called after each transaction of a Commit but the last;
	// an error ends the Commit there, as a crash would.
	partDone func(part int) error
}

var _ overlay.MapStore = (*OverlayMap)(nil)

// OverlayMap returns the block map of the overlay of export name. It creates nothing until the
// first Commit.
func (s *Store) OverlayMap(name string) *OverlayMap {
	return &OverlayMap{s: s, name: []byte(name), maxRecords: DefaultOverlayTxRecords}
}

// runValue encodes a run's end block and state: u64 end | u8 state.
func runValue(end int64, st overlay.BlockState) []byte {
	return append(u64(uint64(end)), byte(st))
}

// decodeRun decodes a record of the runs bucket.
func decodeRun(k, v []byte) (overlay.Run, bool) {
	if len(k) != 8 || len(v) != 9 {
		return overlay.Run{}, false
	}
	r := overlay.Run{First: int64(binary.BigEndian.Uint64(k)), End: int64(binary.BigEndian.Uint64(v)),
		State: overlay.BlockState(v[8])}
	return r, r.First >= 0 && r.End > r.First && r.State != overlay.Absent && r.State <= overlay.Trimmed
}

// Load implements overlay.MapStore.
func (m *OverlayMap) Load(ctx context.Context) (overlay.Snapshot, error) {
	var snap overlay.Snapshot
	err := m.s.view(ctx, func(tx *bolt.Tx) error {
		snap = overlay.Snapshot{}
		b := tx.Bucket(bktOverlays).Bucket(m.name)
		if b == nil {
			return nil
		}
		bs, size, ok := decodePair(b.Get(keyLayout))
		if !ok {
			return fmt.Errorf("overlay %q: bad layout record", m.name)
		}
		snap.Layout = overlay.Layout{BlockSize: int64(bs), Size: int64(size)}
		if g := b.Get(keyGeneration); len(g) == 8 {
			snap.Generation = binary.BigEndian.Uint64(g)
		}
		add := func(r overlay.Run) error {
			n := len(snap.Runs)
			switch {
			case n > 0 && r.First < snap.Runs[n-1].End:
				return fmt.Errorf("overlay %q: run [%d, %d) overlaps run [%d, %d)", m.name, r.First, r.End, snap.Runs[n-1].First, snap.Runs[n-1].End)
			case n > 0 && r.First == snap.Runs[n-1].End && r.State == snap.Runs[n-1].State:
				snap.Runs[n-1].End = r.End // left apart by an interrupted Commit
			default:
				snap.Runs = append(snap.Runs, r)
			}
			return nil
		}
		if legacy := b.Bucket(bktBlocks); legacy != nil {
			return legacy.ForEach(func(k, v []byte) error {
				if len(k) != 8 || len(v) != 1 || v[0] == byte(overlay.Absent) || v[0] > byte(overlay.Trimmed) {
					return fmt.Errorf("overlay %q: block record %x = %x is not valid", m.name, k, v)
				}
				i := int64(binary.BigEndian.Uint64(k))
				return add(overlay.Run{First: i, End: i + 1, State: overlay.BlockState(v[0])})
			})
		}
		runs := b.Bucket(bktRuns)
		if runs == nil {
			return nil
		}
		return runs.ForEach(func(k, v []byte) error {
			r, ok := decodeRun(k, v)
			if !ok {
				return fmt.Errorf("overlay %q: run record %x = %x is not valid", m.name, k, v)
			}
			return add(r)
		})
	})
	if err != nil {
		return overlay.Snapshot{}, fmt.Errorf("store: %w", err)
	}
	return snap, nil
}

// Commit implements overlay.MapStore. Concurrent commits of different overlays share
// transactions (and their fsyncs). ctx is checked before the first transaction only: once
// begun, a Commit runs to its end or to an error (see overlay.MapStore on split commits).
func (m *OverlayMap) Commit(ctx context.Context, layout overlay.Layout, updates []overlay.Run) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	// Load refuses states it does not know: recording one would make the overlay unopenable.
	if err := overlay.CheckRuns(updates); err != nil {
		return 0, fmt.Errorf("store: overlay %q: %w", m.name, err)
	}
	// updates[idx] from block pos on (pos is updates[idx].First when it is untouched) is what
	// the transactions so far have not applied.
	idx, pos := 0, int64(0)
	if len(updates) > 0 {
		pos = updates[0].First
	}
	for part := 1; ; part++ {
		var nIdx int
		var nPos int64
		var gen uint64
		// Batch may run the function more than once, each time in a fresh transaction: it is
		// idempotent given the transaction's starting state, and reports its progress only
		// through variables it sets afresh.
		err := m.s.db.Batch(func(tx *bolt.Tx) error {
			nIdx, nPos, gen = idx, pos, 0
			b, err := tx.Bucket(bktOverlays).CreateBucketIfNotExists(m.name)
			if err != nil {
				return err
			}
			if err := b.Put(keyLayout, pair(uint64(layout.BlockSize), uint64(layout.Size))); err != nil {
				return err
			}
			runs, err := m.runsBucket(b)
			if err != nil {
				return err
			}
			for budget := m.maxRecords; nIdx < len(updates) && budget > 0; {
				u := updates[nIdx]
				next, ops, err := applyRun(runs, max(nPos, u.First), u.End, u.State, max(1, budget/2))
				if err != nil {
					return err
				}
				budget -= max(ops, 1)
				if next < u.End {
					nPos = next
					break
				}
				if nIdx++; nIdx < len(updates) {
					nPos = updates[nIdx].First
				}
			}
			if nIdx < len(updates) {
				return nil // more transactions to come: the generation waits for the last
			}
			gen = 1
			if g := b.Get(keyGeneration); len(g) == 8 {
				gen = binary.BigEndian.Uint64(g) + 1
			}
			return b.Put(keyGeneration, u64(gen))
		})
		if err != nil {
			return 0, fmt.Errorf("store: overlay %q: %w", m.name, err)
		}
		if gen != 0 {
			return gen, nil
		}
		idx, pos = nIdx, nPos
		if m.partDone != nil {
			if err := m.partDone(part); err != nil {
				return 0, fmt.Errorf("store: overlay %q: %w", m.name, err)
			}
		}
	}
}

// runsBucket returns the runs bucket of overlay bucket b, first converting a map recorded by
// an h2kvm that stored one record per block (a blocks bucket) into runs.
func (m *OverlayMap) runsBucket(b *bolt.Bucket) (*bolt.Bucket, error) {
	runs, err := b.CreateBucketIfNotExists(bktRuns)
	if err != nil {
		return nil, err
	}
	legacy := b.Bucket(bktBlocks)
	if legacy == nil {
		return runs, nil
	}
	var blocks []overlay.Run
	err = legacy.ForEach(func(k, v []byte) error {
		if len(k) != 8 || len(v) != 1 || v[0] == byte(overlay.Absent) || v[0] > byte(overlay.Trimmed) {
			return fmt.Errorf("overlay %q: block record %x = %x is not valid", m.name, k, v)
		}
		i := int64(binary.BigEndian.Uint64(k))
		if n := len(blocks); n > 0 && blocks[n-1].End == i && blocks[n-1].State == overlay.BlockState(v[0]) {
			blocks[n-1].End++
		} else {
			blocks = append(blocks, overlay.Run{First: i, End: i + 1, State: overlay.BlockState(v[0])})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, r := range blocks {
		if err := runs.Put(u64(uint64(r.First)), runValue(r.End, r.State)); err != nil {
			return nil, err
		}
	}
	return runs, b.DeleteBucket(bktBlocks)
}

// applyRun gives blocks [first, end) state st in the runs bucket, keeping its runs sorted,
// disjoint and coalesced. It handles at most budget (>= 1) of the runs that start in
// [first, end], so it puts or deletes at most 2*budget+3 records; when more runs start there
// it applies only [first, next) and returns next < end. ops is the number of records put or
// deleted.
func applyRun(runs *bolt.Bucket, first, end int64, st overlay.BlockState, budget int) (next int64, ops int, err error) {
	// Read before writing: a bbolt cursor does not survive changes to its bucket.
	c := runs.Cursor()
	var pred overlay.Run // the run that starts before first and reaches it, if any
	k, v := c.Seek(u64(uint64(first)))
	pk, pv := c.Last()
	if k != nil {
		c.Seek(u64(uint64(first)))
		pk, pv = c.Prev()
	}
	if pk != nil {
		r, ok := decodeRun(pk, pv)
		if !ok {
			return 0, 0, fmt.Errorf("run record %x = %x is not valid", pk, pv)
		}
		if r.First < first && r.End >= first {
			pred = r
		}
	}
	var starts []overlay.Run // the runs that start in [first, end]: budget+1 at most
	for k, v = c.Seek(u64(uint64(first))); k != nil && len(starts) <= budget; k, v = c.Next() {
		r, ok := decodeRun(k, v)
		if !ok {
			return 0, 0, fmt.Errorf("run record %x = %x is not valid", k, v)
		}
		if r.First > end {
			break
		}
		starts = append(starts, r)
	}
	next = end
	if len(starts) > budget {
		// Too many for this transaction: apply [first, next) now, the rest in the next one.
		// starts[:budget] then all end by next.
		next, starts = starts[budget].First, starts[:budget]
	}

	put := func(r overlay.Run) error { ops++; return runs.Put(u64(uint64(r.First)), runValue(r.End, r.State)) }
	del := func(r overlay.Run) error { ops++; return runs.Delete(u64(uint64(r.First))) }
	nf, ne := first, next // the run st gets, grown by the neighbours of state st it merges
	if pred.State != overlay.Absent {
		if pred.State == st {
			nf, ne = pred.First, max(ne, pred.End) // rewritten below under its own key
		} else if pred.End > first {
			if err := put(overlay.Run{First: pred.First, End: first, State: pred.State}); err != nil {
				return 0, ops, err
			}
			if pred.End > end {
				if err := put(overlay.Run{First: end, End: pred.End, State: pred.State}); err != nil {
					return 0, ops, err
				}
			}
		}
	}
	for _, r := range starts {
		switch {
		case r.State == st:
			ne = max(ne, r.End) // merged (it may touch at end or reach past it)
		case r.First == end:
			continue // touching at end in another state: left as it is
		case r.End > end:
			if err := put(overlay.Run{First: end, End: r.End, State: r.State}); err != nil {
				return 0, ops, err
			}
		}
		if st == overlay.Absent || r.First != nf {
			if err := del(r); err != nil {
				return 0, ops, err
			}
		}
	}
	if st != overlay.Absent {
		if err := put(overlay.Run{First: nf, End: ne, State: st}); err != nil {
			return 0, ops, err
		}
	}
	return next, ops, nil
}

// Clear implements overlay.MapStore: it removes the overlay's map.
func (m *OverlayMap) Clear(ctx context.Context) error {
	err := m.s.update(ctx, func(tx *bolt.Tx) error {
		err := tx.Bucket(bktOverlays).DeleteBucket(m.name)
		if errors.Is(err, bolt.ErrBucketNotFound) {
			return nil
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("store: clear overlay %q: %w", m.name, err)
	}
	return nil
}
