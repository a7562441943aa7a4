package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/h2kvm/h2kvm/vfs/cache"
)

// CacheIndex is the presence map of one cache, stored under caches/<id>. It implements
// cache.Index.
type CacheIndex struct {
	s  *Store
	id []byte
}

var _ cache.Index = (*CacheIndex)(nil)

// CacheIndex returns the presence map of the cache with the given source identity. It creates
// nothing until first used.
func (s *Store) CacheIndex(id string) *CacheIndex {
	return &CacheIndex{s: s, id: []byte(id)}
}

const chunkValLen = 9

func chunkVal(c cache.ChunkInfo) []byte {
	v := binary.BigEndian.AppendUint64(make([]byte, 0, chunkValLen), c.Seq)
	var flags byte
	if c.Priority {
		flags |= 1
	}
	return append(v, flags)
}

// Load implements cache.Index.
func (ix *CacheIndex) Load(ctx context.Context, layout cache.Layout) ([]cache.ChunkInfo, error) {
	var out []cache.ChunkInfo
	err := ix.s.update(ctx, func(tx *bolt.Tx) error {
		out = nil
		b, err := tx.Bucket(bktCaches).CreateBucketIfNotExists(ix.id)
		if err != nil {
			return err
		}
		cs, size, ok := decodePair(b.Get(keyLayout))
		if !ok || int64(cs) != layout.ChunkSize || int64(size) != layout.SourceSize {
			if b.Bucket(bktChunks) != nil {
				if err := b.DeleteBucket(bktChunks); err != nil {
					return err
				}
			}
			if _, err := b.CreateBucket(bktChunks); err != nil {
				return err
			}
			return b.Put(keyLayout, pair(uint64(layout.ChunkSize), uint64(layout.SourceSize)))
		}
		chunks := b.Bucket(bktChunks)
		if chunks == nil {
			return fmt.Errorf("cache %q: no chunks bucket", ix.id)
		}
		return chunks.ForEach(func(k, v []byte) error {
			if len(k) != 8 || len(v) != chunkValLen {
				return fmt.Errorf("cache %q: chunk record %x = %x: bad length", ix.id, k, v)
			}
			out = append(out, cache.ChunkInfo{
				Index:    int64(binary.BigEndian.Uint64(k)),
				Seq:      binary.BigEndian.Uint64(v),
				Priority: v[8]&1 != 0,
			})
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return out, nil
}

func (ix *CacheIndex) chunks(tx *bolt.Tx) (*bolt.Bucket, error) {
	b := tx.Bucket(bktCaches).Bucket(ix.id)
	if b == nil || b.Bucket(bktChunks) == nil {
		return nil, fmt.Errorf("cache %q: not loaded (Load records the layout first)", ix.id)
	}
	return b.Bucket(bktChunks), nil
}

// MarkPresent implements cache.Index.
func (ix *CacheIndex) MarkPresent(ctx context.Context, cs []cache.ChunkInfo) error {
	return ix.put(ctx, cs, false)
}

// Touch implements cache.Index.
func (ix *CacheIndex) Touch(ctx context.Context, cs []cache.ChunkInfo) error {
	return ix.put(ctx, cs, true)
}

func (ix *CacheIndex) put(ctx context.Context, cs []cache.ChunkInfo, onlyExisting bool) error {
	err := ix.s.update(ctx, func(tx *bolt.Tx) error {
		b, err := ix.chunks(tx)
		if err != nil {
			return err
		}
		for _, c := range cs {
			k := u64(uint64(c.Index))
			if onlyExisting && b.Get(k) == nil {
				continue
			}
			if err := b.Put(k, chunkVal(c)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

// Evict implements cache.Index.
func (ix *CacheIndex) Evict(ctx context.Context, idx []int64) error {
	err := ix.s.update(ctx, func(tx *bolt.Tx) error {
		b, err := ix.chunks(tx)
		if err != nil {
			return err
		}
		for _, i := range idx {
			if err := b.Delete(u64(uint64(i))); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

// Caches returns the ids of every cache with records.
func (s *Store) Caches(ctx context.Context) ([]string, error) {
	var ids []string
	err := s.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bktCaches).ForEachBucket(func(k []byte) error {
			ids = append(ids, string(k))
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return ids, nil
}

// DeleteCache removes the records of a cache (delete its cache file too). Deleting an unknown
// cache is not an error.
func (s *Store) DeleteCache(ctx context.Context, id string) error {
	err := s.update(ctx, func(tx *bolt.Tx) error {
		err := tx.Bucket(bktCaches).DeleteBucket([]byte(id))
		if errors.Is(err, bolt.ErrBucketNotFound) {
			return nil
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("store: delete cache %q: %w", id, err)
	}
	return nil
}
