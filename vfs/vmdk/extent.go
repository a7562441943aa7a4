package vmdk

import (
	"context"

	"github.com/h2kvm/h2kvm/vfs"
)

// extentReader reads one extent of a link (one line of a descriptor's extent section). Offsets
// are bytes relative to the start of the extent's virtual range.
//
// readAt fills all of p; ranges that mapRange reports as Hole or Zero read as zeros.
// mapRange reports, for [off, off+length) clipped to size(), Data for allocated grains, Zero for
// grains marked zero (they hide the parent), and Hole for unallocated grains (they fall through to
// the parent link); Depth is left 0 (the chain fills it in). It may cover only a prefix.
// Implementations MUST be safe for concurrent use.
type extentReader interface {
	size() int64
	readAt(ctx context.Context, p []byte, off int64) error
	mapRange(ctx context.Context, off, length int64) ([]vfs.Extent, error)
	// format names the extent's on-disk format for `h2kvm info`: "flat", "sparse" (KDMV),
	// "stream", "cowd", "sesparse", "zero".
	format() string
	// allocated returns the bytes of the file that hold grains (for `h2kvm info`).
	allocated(ctx context.Context) (int64, error)
	close() error
}
