package cache_test

import (
	"context"
	"testing"

	"github.com/h2kvm/h2kvm/vfs"
	"github.com/h2kvm/h2kvm/vfs/cache"
	"github.com/h2kvm/h2kvm/vfs/vfstest"
)

// sourceDevice presents a Source as a Device whose bytes are all Data, so the device contract
// suite can check the cache's reads.
type sourceDevice struct{ vfs.Source }

func (d sourceDevice) Extents(ctx context.Context, off, length int64) ([]vfs.Extent, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	length = min(length, d.Size()-off)
	if length <= 0 {
		return nil, nil
	}
	return []vfs.Extent{{Off: off, Len: length, Kind: vfs.Data}}, nil
}

func TestDeviceContract(t *testing.T) {
	size := int64(5*MiB + 777)
	r := newRemote(size)
	c := newCache(t, r, cache.Config{ChunkSize: 256 << 10, Budget: cache.NewBudget(MiB)})
	vfstest.TestDevice(t, sourceDevice{c}, expect(0, int(size)))
	if st := c.Stats(); st.CachedBytes > MiB || st.Evictions == 0 {
		t.Errorf("under a 1 MiB budget: %+v", st)
	}
}
