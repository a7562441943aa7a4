package cache_test

import (
	"testing"

	"github.com/h2kvm/h2kvm/vfs/cache"
)

// TestChunksReadBackFromFile: with only two chunks kept in memory, a second pass reads almost
// every chunk back from the cache file, where it was written with O_DIRECT (or buffered, on
// file systems without it): the bytes must be the source's and nothing is fetched again.
func TestChunksReadBackFromFile(t *testing.T) {
	r := newRemote(10*MiB + 4096 + 100) // a short last chunk, not a multiple of 4096
	c := newCache(t, r, cache.Config{ReadAhead: -1, Concurrency: 1})
	readAll(t, c, 300000)
	first := r.bytes.Load()
	if first != r.size {
		t.Fatalf("first pass fetched %d bytes, want %d", first, r.size)
	}
	readAll(t, c, 1<<20)
	readAll(t, c, 77777)
	if got := r.bytes.Load(); got != first {
		t.Fatalf("later passes fetched %d more bytes", got-first)
	}
}
