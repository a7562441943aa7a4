package vmdk

// This file holds what keeps metadata read from untrusted headers bounded: the per-chain
// metadata budget, a directory reader that decodes in fixed-size chunks, and the cache of
// allocated-byte counts that Info reads.
//
// Locking: allocCache.mu is the only mutex; no I/O happens while it is held.

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/h2kvm/h2kvm/vfs"
)

// DefaultMetadataBudget is the metadata one chain may hold in memory when Options.MetadataBudget
// is 0: 256 MiB, enough for the grain directories of 32 links of 64 TiB at default geometry.
const DefaultMetadataBudget = 256 << 20

// metaBudget counts the metadata a chain's extents hold for their lifetime: grain directories
// (primary and redundant) and the grain maps rebuilt from stream markers. Grain tables read on
// demand are not charged: they live in per-extent caches of fixed size. Open charges each
// directory before it allocates it, so an image whose headers ask for more than the budget is
// refused before the memory is taken. A metaBudget is used by one Open at a time.
type metaBudget struct {
	max, used int64
}

// newMetaBudget returns a budget of max bytes (0: DefaultMetadataBudget).
func newMetaBudget(max int64) *metaBudget {
	if max <= 0 {
		max = DefaultMetadataBudget
	}
	return &metaBudget{max: max}
}

// charge takes n bytes for what (a grain directory, ...) or fails with vfs.ErrUnsupported
// saying the size asked and the budget; callers add the file name.
func (b *metaBudget) charge(what string, n int64) error {
	if n > b.max-b.used {
		return fmt.Errorf("%s needs %d bytes of memory, past the chain's metadata budget (%d of %d bytes already used; raise vmdk.Options.MetadataBudget to open it): %w",
			what, n, b.used, b.max, vfs.ErrUnsupported)
	}
	b.used += n
	return nil
}

// dirChunk is the size of the buffer directories are read through.
const dirChunk = 64 << 10

// readEntries reads n little-endian entries of size bytes (4 or 8) at byte off of src and
// hands each to put with its index, through one dirChunk buffer, so reading a directory
// allocates nothing beyond the directory itself.
func readEntries(ctx context.Context, src vfs.Source, off, n int64, size int, put func(i int64, e uint64)) error {
	buf := make([]byte, min(n*int64(size), dirChunk))
	per := int64(len(buf) / size)
	for i := int64(0); i < n; i += per {
		k := min(per, n-i)
		b := buf[:k*int64(size)]
		if err := vfs.ReadFull(ctx, src, b, off+i*int64(size)); err != nil {
			return err
		}
		for j := range k {
			if size == 4 {
				put(i+j, uint64(binary.LittleEndian.Uint32(b[4*j:])))
			} else {
				put(i+j, binary.LittleEndian.Uint64(b[8*j:]))
			}
		}
	}
	return nil
}

// checkTableCount refuses a directory whose distinct grain tables cannot all lie in the file
// without overlapping: a real image never shares or overlaps tables, and the check bounds what
// an allocated-bytes walk reads to the size of the file.
func checkTableCount(name, what string, tables, tableBytes, fileSize int64) error {
	if tableBytes > 0 && tables > fileSize/tableBytes {
		return fmt.Errorf("vmdk: %s: %s points at %d distinct grain tables of %d bytes, more than a file of %d bytes can hold without overlapping them: %w",
			name, what, tables, tableBytes, fileSize, vfs.ErrCorrupt)
	}
	return nil
}

// allocCache remembers an extent's allocated-byte count once computed: metadata does not change
// while a chain is open, and Info is asked again and again (GET /v1/exports/NAME).
type allocCache struct {
	mu   sync.Mutex
	done bool  // guarded by mu
	n    int64 // guarded by mu
}

// get returns the cached count or computes it with count (outside the lock; two concurrent
// first callers may both count). Errors are not cached.
func (c *allocCache) get(ctx context.Context, count func(context.Context) (int64, error)) (int64, error) {
	c.mu.Lock()
	done, n := c.done, c.n
	c.mu.Unlock()
	if done {
		return n, nil
	}
	n, err := count(ctx)
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	c.done, c.n = true, n
	c.mu.Unlock()
	return n, nil
}
