package overlay_test

import (
	"testing"

	"github.com/h2kvm/h2kvm/vfs/overlay"
	"github.com/h2kvm/h2kvm/vfs/overlay/mapstoretest"
)

// TestMemMapContract runs the MapStore contract suite against the in-memory fake the overlay
// tests use, so that they test the overlay against the contract package store implements. The
// fake outlives its users, so reopening returns it unchanged.
func TestMemMapContract(t *testing.T) {
	mapstoretest.Run(t, func(t *testing.T) (overlay.MapStore, func(*testing.T) overlay.MapStore) {
		m := &memMap{}
		return m, func(*testing.T) overlay.MapStore { return m }
	})
}
