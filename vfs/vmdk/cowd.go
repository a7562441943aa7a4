package vmdk

import (
	"context"
	"fmt"

	"github.com/h2kvm/h2kvm/vfs"
)

// openCOWD opens an ESX sparse ("COWD", vmfsSparse) extent.
func openCOWD(ctx context.Context, src vfs.Source) (extentReader, error) {
	return nil, fmt.Errorf("vmdk: %s: COWD extents: %w", src.Name(), vfs.ErrUnsupported)
}
