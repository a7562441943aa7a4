package cache_test

import (
	"testing"

	"github.com/h2kvm/h2kvm/vfs/cache"
	"github.com/h2kvm/h2kvm/vfs/cache/indextest"
)

// TestMemIndexContract runs the Index contract suite against the in-memory fake the cache tests
// use, so that they test the cache against the contract package store implements. The fake
// outlives its users, so reopening returns it unchanged.
func TestMemIndexContract(t *testing.T) {
	indextest.Run(t, func(t *testing.T) (cache.Index, func(*testing.T) cache.Index) {
		m := newMemIndex()
		return m, func(*testing.T) cache.Index { return m }
	})
}
