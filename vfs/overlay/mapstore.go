package overlay

import (
	"context"
	"fmt"
)

// BlockState is the state of one overlay block. Absent blocks are not stored.
type BlockState uint8

const (
	Absent  BlockState = iota // falls through to the base
	Data                      // the block's bytes are in the overlay file
	Zeroed                    // reads zeros (written by Zero)
	Trimmed                   // reads zeros (written by Trim)
)

func (s BlockState) String() string {
	switch s {
	case Absent:
		return "absent"
	case Data:
		return "data"
	case Zeroed:
		return "zeroed"
	case Trimmed:
		return "trimmed"
	}
	return fmt.Sprintf("BlockState(%d)", uint8(s))
}

// Run is the blocks [First, End) in one State. The block map is kept and stored as runs, so
// that zeroing or trimming a whole multi-TiB disk costs one run, not one entry per block.
type Run struct {
	First, End int64 // block indexes, First < End
	State      BlockState
}

// Len returns the number of blocks in the run.
func (r Run) Len() int64 { return r.End - r.First }

// Layout is what a block map is relative to.
type Layout struct {
	BlockSize int64
	Size      int64
}

// Snapshot is a persisted block map.
type Snapshot struct {
	Layout Layout // zero when nothing is recorded
	// Runs are the blocks not Absent: sorted, not overlapping, no run Absent, and adjacent
	// runs of equal state coalesced (so equal maps have equal Runs).
	Runs       []Run
	Generation uint64 // number of completed commits since the map was created
}

// MapStore persists the block map of one overlay. Package store implements it; the contract
// suite is package mapstoretest.
//
// An Overlay calls Commit from one goroutine at a time.
//
// # Split commits and crashes
//
// A Commit may be carried out in several store transactions, so that no transaction holds
// millions of records (package store bounds each one). A Commit is therefore atomic per block,
// not as a whole: after a crash (or an I/O error) during Commit, Load reports every block in
// its state before the Commit or in the state the Commit gives it, and the generation of the
// previous Commit (the generation advances in the last transaction, with the last updates, so a
// generation Load reports was committed whole). Committing the same updates again completes
// the Commit. A Load concurrent with a split Commit may likewise see it part done (the
// overlay loads only in Open, before it commits).
//
// That is safe for the overlay because Flush fdatasyncs the overlay file before it commits, and
// Open punches the file range of every block the map does not call Data: a block left in its
// old state reads as it did after the previous completed Flush (Absent: the base; Zeroed or
// Trimmed: zeros) or, if it was Data and was zeroed since, zeros (Zero punched it before it was
// recorded); a block already in its new state reads what the interrupted Flush was making
// durable. Each block therefore reads either its state at the last completed Flush or a state
// a later acknowledged operation gave it — the guarantee an interrupted Flush already gave
// (writes after the last completed Flush may be lost, a block at a time). A cancelled context
// is only honoured before the first transaction: a Commit is never left half done by a
// cancellation.
type MapStore interface {
	// Load returns the recorded map (zero Layout and no runs when there is none).
	Load(ctx context.Context) (Snapshot, error)
	// Commit records layout, applies updates in order (each run sets its blocks to its state,
	// a later run winning where runs overlap; Absent deletes), increments the generation and
	// returns it. A run with First < 0, End <= First or an unknown state is refused before
	// anything is written. See "Split commits and crashes" for what a failed Commit leaves.
	Commit(ctx context.Context, layout Layout, updates []Run) (uint64, error)
	// Clear removes the map, in one transaction.
	Clear(ctx context.Context) error
}

// CheckRuns reports whether updates are valid Commit updates: First >= 0, End > First and a
// known state for every run.
func CheckRuns(updates []Run) error {
	for _, r := range updates {
		if r.First < 0 || r.End <= r.First {
			return fmt.Errorf("run [%d, %d) of %v is empty or negative", r.First, r.End, r.State)
		}
		if r.State > Trimmed {
			return fmt.Errorf("blocks [%d, %d): state %v is not one of absent, data, zeroed, trimmed", r.First, r.End, r.State)
		}
	}
	return nil
}
