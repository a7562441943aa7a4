package vfs

import (
	"context"
	"fmt"
)

// ExtentKind says how a range of a device reads.
type ExtentKind uint8

const (
	// Data: the range is allocated and holds bytes (which may still happen to be zero).
	Data ExtentKind = iota
	// Zero: the range is allocated or explicitly marked as reading zeros (a zeroed grain, a
	// WRITE_ZEROES in an overlay). In a chain a Zero range hides the parents below it.
	Zero
	// Hole: the range is unallocated. It reads as zeros; in a chain a Hole falls through to the
	// parent link.
	Hole
)

func (k ExtentKind) String() string {
	switch k {
	case Data:
		return "data"
	case Zero:
		return "zero"
	case Hole:
		return "hole"
	}
	return fmt.Sprintf("ExtentKind(%d)", uint8(k))
}

// Extent describes one range of a device. Depth is the index of the chain link that supplies the
// range: 0 is the top (the link the VM writes to), 1 its parent, and so on. For a range that no
// link allocates, Depth is the number of links. Devices that are not chains report Depth 0.
type Extent struct {
	Off   int64
	Len   int64
	Kind  ExtentKind
	Depth int
}

// End returns the offset just past the extent.
func (e Extent) End() int64 { return e.Off + e.Len }

// Device is a virtual block device of fixed size.
//
// ReadAt follows io.ReaderAt: it returns len(p) bytes or an error; a read that reaches Size()
// returns the bytes up to Size() and io.EOF. Hole and Zero ranges read as zeros.
//
// Extents returns extents covering [off, off+length) in order, without gaps, clipped to the
// device size; adjacent extents of equal kind and depth MAY be left unmerged. An implementation
// may return extents that cover only a prefix of the range (at least one byte) when computing the
// rest would be costly; callers loop.
//
// Implementations MUST be safe for concurrent use.
type Device interface {
	ReadAt(ctx context.Context, p []byte, off int64) (int, error)
	Size() int64
	Extents(ctx context.Context, off, length int64) ([]Extent, error)
}

// Writable is a Device that accepts writes. Writes MUST NOT reach the source of the bytes
// (a VMDK chain is never written); they land in an overlay.
//
// Zero makes the range read as zeros and report Zero; Trim makes the range read as zeros and may
// report it as Hole. Flush makes every completed write durable.
type Writable interface {
	Device
	WriteAt(ctx context.Context, p []byte, off int64) (int, error)
	Zero(ctx context.Context, off, length int64) error
	Trim(ctx context.Context, off, length int64) error
	Flush(ctx context.Context) error
}

// Closer is a Device that holds resources (files, connections) released by Close.
type Closer interface {
	Close() error
}

// Unwrapper is implemented by decorators (cache, metrics, retry) that wrap another device.
type Unwrapper interface {
	Unwrap() Device
}
