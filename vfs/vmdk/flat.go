package vmdk

import (
	"context"
	"fmt"
	"os"
	"syscall"

	"github.com/h2kvm/h2kvm/vfs"
)

// flatExtent is a FLAT or VMFS extent: the extent's bytes are the file's bytes from offset on.
// It is always fully allocated.
type flatExtent struct {
	src    vfs.Source
	file   *os.File // src reopened for Chain.MapFile; nil unless src is a local file
	offset int64    // bytes into src
	n      int64    // extent size in bytes
}

var _ extentReader = (*flatExtent)(nil)

// openFlat checks that src holds the whole extent: a flat file shorter than its extent is a
// copy that was cut short.
func openFlat(src vfs.Source, offsetSectors, sectors int64) (*flatExtent, error) {
	f := &flatExtent{src: src, offset: offsetSectors * sectorSize, n: sectors * sectorSize}
	if f.offset+f.n > src.Size() {
		return nil, fmt.Errorf("%s: flat extent of %d bytes at offset %d needs %d bytes, file has %d: %w",
			src.Name(), f.n, f.offset, f.offset+f.n, src.Size(), vfs.ErrTruncated)
	}
	f.file = localFile(src)
	return f, nil
}

// localFile opens the local file behind src a second time, as an *os.File that Chain.MapFile
// can hand to a zero-copy sender (vfs.File does not expose its own). It returns nil when src is
// not a local file or when the name no longer leads to the file src has open (same device and
// inode), so that a file replaced since it was opened is never mapped.
func localFile(src vfs.Source) *os.File {
	vf, ok := src.(*vfs.File)
	if !ok {
		return nil
	}
	f, err := os.Open(vf.Name())
	if err != nil {
		return nil
	}
	var a, b syscall.Stat_t
	if syscall.Fstat(int(vf.Fd()), &a) != nil || syscall.Fstat(int(f.Fd()), &b) != nil || a.Dev != b.Dev || a.Ino != b.Ino {
		f.Close()
		return nil
	}
	return f
}

func (f *flatExtent) size() int64    { return f.n }
func (f *flatExtent) format() string { return "flat" }

func (f *flatExtent) close() error {
	if f.file != nil {
		f.file.Close()
	}
	return f.src.Close()
}

// mapFile: every byte of a flat extent is in its file, in order.
func (f *flatExtent) mapFile(ctx context.Context, off, length int64) (*os.File, int64, int64, error) {
	if f.file == nil || off < 0 || off >= f.n {
		return nil, 0, 0, nil
	}
	return f.file, f.offset + off, min(length, f.n-off), nil
}

func (f *flatExtent) readAt(ctx context.Context, p []byte, off int64) error {
	if off < 0 || off+int64(len(p)) > f.n {
		return fmt.Errorf("vmdk: %s: read of %d bytes at %d beyond extent size %d: %w", f.src.Name(), len(p), off, f.n, vfs.ErrOutOfRange)
	}
	if err := vfs.ReadFull(ctx, f.src, p, f.offset+off); err != nil {
		return fmt.Errorf("vmdk: flat extent: %w", err)
	}
	return nil
}

func (f *flatExtent) mapRange(ctx context.Context, off, length int64) ([]vfs.Extent, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return []vfs.Extent{{Off: off, Len: min(length, f.n-off), Kind: vfs.Data}}, nil
}

func (f *flatExtent) allocated(ctx context.Context) (int64, error) { return f.n, nil }

// zeroExtent is a ZERO extent (or a NOACCESS line): it reads zeros and hides any parent.
type zeroExtent struct{ n int64 }

var _ extentReader = zeroExtent{}

func (z zeroExtent) size() int64    { return z.n }
func (z zeroExtent) format() string { return "zero" }
func (z zeroExtent) close() error   { return nil }

func (z zeroExtent) readAt(ctx context.Context, p []byte, off int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	clear(p)
	return nil
}

func (z zeroExtent) mapRange(ctx context.Context, off, length int64) ([]vfs.Extent, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return []vfs.Extent{{Off: off, Len: min(length, z.n-off), Kind: vfs.Zero}}, nil
}

func (z zeroExtent) allocated(ctx context.Context) (int64, error) { return 0, nil }
