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

// Layout is what a block map is relative to.
type Layout struct {
	BlockSize int64
	Size      int64
}

// Snapshot is a persisted block map.
type Snapshot struct {
	Layout     Layout // zero when nothing is recorded
	Blocks     map[int64]BlockState
	Generation uint64 // number of commits since the map was created
}

// MapStore persists the block map of one overlay. Package store implements it.
//
// An Overlay calls Commit from one goroutine at a time.
type MapStore interface {
	// Load returns the recorded map (zero Layout and no blocks when there is none).
	Load(ctx context.Context) (Snapshot, error)
	// Commit records layout and applies updates (Absent deletes a block) in one atomic
	// transaction, increments the generation and returns it.
	Commit(ctx context.Context, layout Layout, updates map[int64]BlockState) (uint64, error)
	// Clear removes the map.
	Clear(ctx context.Context) error
}
