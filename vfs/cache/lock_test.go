package cache_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/h2kvm/h2kvm/vfs/cache"
)

// TestCacheFileLocked: a second Cache on a file in use (another export of the same daemon, a
// second daemon on the same state directory) is refused instead of resetting the chunks the
// first one serves; once the first is closed the file opens again with its chunks.
func TestCacheFileLocked(t *testing.T) {
	r := newRemote(4 * MiB)
	path := filepath.Join(t.TempDir(), "cache")
	ix := newMemIndex()
	c := newCache(t, r, cache.Config{Path: path, Index: ix})
	readAll(t, c, 256<<10)

	c2, err := cache.New(context.Background(), r, cache.Config{Path: path, Index: ix})
	if err == nil {
		c2.Close()
		t.Fatal("a second cache on a file in use was opened")
	}
	if !errors.Is(err, cache.ErrLocked) {
		t.Fatalf("second cache: %v, want ErrLocked", err)
	}
	t.Logf("second cache: %v", err)
	readAll(t, c, 256<<10) // still every byte right
	fetched := r.bytes.Load()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c3 := newCache(t, r, cache.Config{Path: path, Index: ix})
	readAll(t, c3, 256<<10)
	if n := r.bytes.Load() - fetched; n != 0 {
		t.Errorf("reopened cache fetched %d bytes", n)
	}
}
