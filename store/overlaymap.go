package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/h2kvm/h2kvm/vfs/overlay"
)

// OverlayMap is the block map of one export's overlay, stored under overlays/<export>. It
// implements overlay.MapStore.
type OverlayMap struct {
	s    *Store
	name []byte
}

var _ overlay.MapStore = (*OverlayMap)(nil)

// OverlayMap returns the block map of the overlay of export name. It creates nothing until the
// first Commit.
func (s *Store) OverlayMap(name string) *OverlayMap {
	return &OverlayMap{s: s, name: []byte(name)}
}

// Load implements overlay.MapStore.
func (m *OverlayMap) Load(ctx context.Context) (overlay.Snapshot, error) {
	var snap overlay.Snapshot
	err := m.s.view(ctx, func(tx *bolt.Tx) error {
		snap = overlay.Snapshot{Blocks: map[int64]overlay.BlockState{}}
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
		blocks := b.Bucket(bktBlocks)
		if blocks == nil {
			return nil
		}
		return blocks.ForEach(func(k, v []byte) error {
			if len(k) != 8 || len(v) != 1 || v[0] == byte(overlay.Absent) || v[0] > byte(overlay.Trimmed) {
				return fmt.Errorf("overlay %q: block record %x = %x is not valid", m.name, k, v)
			}
			snap.Blocks[int64(binary.BigEndian.Uint64(k))] = overlay.BlockState(v[0])
			return nil
		})
	})
	if err != nil {
		return overlay.Snapshot{}, fmt.Errorf("store: %w", err)
	}
	return snap, nil
}

// Commit implements overlay.MapStore. Concurrent commits of different overlays share a
// transaction (and its fsync).
func (m *OverlayMap) Commit(ctx context.Context, layout overlay.Layout, updates map[int64]overlay.BlockState) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	// Load refuses states it does not know: recording one would make the overlay unopenable.
	for i, st := range updates {
		if st > overlay.Trimmed {
			return 0, fmt.Errorf("store: overlay %q: block %d: state %v is not one of absent, data, zeroed, trimmed", m.name, i, st)
		}
	}
	var gen uint64
	// Batch may run the function more than once, each time in a fresh transaction: it is
	// idempotent given the transaction's starting state.
	err := m.s.db.Batch(func(tx *bolt.Tx) error {
		b, err := tx.Bucket(bktOverlays).CreateBucketIfNotExists(m.name)
		if err != nil {
			return err
		}
		if err := b.Put(keyLayout, pair(uint64(layout.BlockSize), uint64(layout.Size))); err != nil {
			return err
		}
		blocks, err := b.CreateBucketIfNotExists(bktBlocks)
		if err != nil {
			return err
		}
		for i, st := range updates {
			k := u64(uint64(i))
			if st == overlay.Absent {
				err = blocks.Delete(k)
			} else {
				err = blocks.Put(k, []byte{byte(st)})
			}
			if err != nil {
				return err
			}
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
	return gen, nil
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
