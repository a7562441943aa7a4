package vmdk

import (
	"context"
	"fmt"

	"github.com/h2kvm/h2kvm/vfs"
)

// openSESparse opens a seSparse extent.
func openSESparse(ctx context.Context, src vfs.Source) (extentReader, error) {
	return nil, fmt.Errorf("vmdk: %s: seSparse extents: %w", src.Name(), vfs.ErrUnsupported)
}
