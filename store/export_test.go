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
