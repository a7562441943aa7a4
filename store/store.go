package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

const schemaVersion = 1

var (
	bktMeta     = []byte("meta")
	bktCaches   = []byte("caches")
	bktOverlays = []byte("overlays")
	bktExports  = []byte("exports")
	bktJobs     = []byte("jobs")

	keySchema     = []byte("schema")
	keyLayout     = []byte("layout")
	keyGeneration = []byte("generation")
	bktChunks     = []byte("chunks")
	bktBlocks     = []byte("blocks")
)

// DefaultLockTimeout is how long Open waits for another process to release the database.
const DefaultLockTimeout = 2 * time.Second

// Options configures Open.
type Options struct {
	// LockTimeout bounds the wait for the file lock (default 2s).
	LockTimeout time.Duration
}

// Store is the state database. Safe for concurrent use.
type Store struct {
	db   *bolt.DB
	path string
}

// Open opens (creating if needed) the state database at path.
func Open(path string, opts Options) (*Store, error) {
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = DefaultLockTimeout
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.LockTimeout})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("store: %s: no lock after %v (is another h2kvm daemon using this state directory?): %w",
			path, opts.LockTimeout, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	db.MaxBatchDelay = 2 * time.Millisecond
	s := &Store{db: db, path: path}
	err = db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bktMeta)
		if err != nil {
			return err
		}
		if v := meta.Get(keySchema); v != nil {
			if len(v) != 8 || binary.BigEndian.Uint64(v) != schemaVersion {
				return fmt.Errorf("schema %x, this h2kvm knows %d: %w", v, schemaVersion, ErrSchema)
			}
		} else if err := meta.Put(keySchema, u64(schemaVersion)); err != nil {
			return err
		}
		for _, b := range [][]byte{bktCaches, bktOverlays, bktExports, bktJobs} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: %s: %w", path, err)
	}
	return s, nil
}

// Path returns the database file's path.
func (s *Store) Path() string { return s.path }

// Close closes the database and releases its lock.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("store: close %s: %w", s.path, err)
	}
	return nil
}

// Check verifies the database's structure (bbolt's consistency check: every page reachable
// once, no freed page in use, keys in order). It returns all problems joined, or nil.
func (s *Store) Check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var errs []error
	err := s.db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			errs = append(errs, err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: check %s: %w", s.path, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("store: check %s: %w", s.path, errors.Join(errs...))
	}
	return nil
}

func u64(v uint64) []byte {
	return binary.BigEndian.AppendUint64(nil, v)
}

// pair encodes two u64.
func pair(a, b uint64) []byte {
	return binary.BigEndian.AppendUint64(u64(a), b)
}

func decodePair(v []byte) (uint64, uint64, bool) {
	if len(v) != 16 {
		return 0, 0, false
	}
	return binary.BigEndian.Uint64(v), binary.BigEndian.Uint64(v[8:]), true
}

// update runs fn in a read-write transaction after checking ctx.
func (s *Store) update(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Update(fn)
}

func (s *Store) view(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.View(fn)
}
