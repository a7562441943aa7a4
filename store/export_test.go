package store

import (
	"context"

	bolt "go.etcd.io/bbolt"
)

// OverlayRecords counts the keys stored under overlays/<name>, in every nested bucket: what a
// commit of the overlay's map costs in the database, whatever the schema.
func OverlayRecords(ctx context.Context, s *Store, name string) (int, error) {
	n := 0
	var count func(b *bolt.Bucket) error
	count = func(b *bolt.Bucket) error {
		return b.ForEach(func(k, v []byte) error {
			n++
			if v == nil {
				return count(b.Bucket(k))
			}
			return nil
		})
	}
	err := s.view(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bktOverlays).Bucket([]byte(name))
		if b == nil {
			return nil
		}
		return count(b)
	})
	return n, err
}

// WithTxRecords sets the records a transaction of m's Commit may hold, so that tests split
// small commits.
func (m *OverlayMap) WithTxRecords(n int) *OverlayMap {
	m.maxRecords = n
	return m
}

// FailAfterTx makes m's next Commits stop, with err, after n of their transactions.
func (m *OverlayMap) FailAfterTx(n int, err error) *OverlayMap {
	m.partDone = func(part int) error {
		if part >= n {
			return err
		}
		return nil
	}
	return m
}

// PutLegacyBlocks records blocks as an h2kvm that stored one record per block did: a blocks
// bucket of <u64 index> → u8 state, with layout and generation.
func PutLegacyBlocks(s *Store, name string, bs, size int64, gen uint64, blocks map[int64]byte) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.Bucket(bktOverlays).CreateBucketIfNotExists([]byte(name))
		if err != nil {
			return err
		}
		if err := b.Put(keyLayout, pair(uint64(bs), uint64(size))); err != nil {
			return err
		}
		if err := b.Put(keyGeneration, u64(gen)); err != nil {
			return err
		}
		bl, err := b.CreateBucket(bktBlocks)
		if err != nil {
			return err
		}
		for i, st := range blocks {
			if err := bl.Put(u64(uint64(i)), []byte{st}); err != nil {
				return err
			}
		}
		return nil
	})
}
