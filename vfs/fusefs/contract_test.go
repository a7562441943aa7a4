package fusefs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/h2kvm/h2kvm/vfs"
	"github.com/h2kvm/h2kvm/vfs/vfstest"
	"github.com/h2kvm/h2kvm/vfs/vmdk/vmdktest"
)

// fileDevice is a vfs.Device read back through an export's file under the mount, so that the
// device contract suite checks what a process sees: bytes from pread(2) and extents from
// lseek(SEEK_DATA/SEEK_HOLE). What a file cannot say is decided here: a file has data and
// holes only (the FUSE contract turns Zero extents into holes) and no chain depth, so extents
// are Data or Hole with Depth 0; a context cannot interrupt a system call, so it is checked
// before each one. End-of-file rules are the kernel's (os.File.ReadAt).
type fileDevice struct {
	f    *os.File
	size int64
}

var _ vfs.Device = (*fileDevice)(nil)

func (d *fileDevice) Size() int64 { return d.size }

func (d *fileDevice) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	return d.f.ReadAt(p, off)
}

// Extents walks [off, off+length) with SEEK_DATA and SEEK_HOLE.
func (d *fileDevice) Extents(ctx context.Context, off, length int64) ([]vfs.Extent, error) {
	if off < 0 || off > d.size {
		return nil, fmt.Errorf("file: extents at %d: %w", off, vfs.ErrOutOfRange)
	}
	end := min(off+length, d.size)
	var out []vfs.Extent
	add := func(k vfs.ExtentKind, from, to int64) {
		if to > from {
			out = append(out, vfs.Extent{Off: from, Len: to - from, Kind: k})
		}
	}
	for pos := off; pos < end; {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		data, err := unix.Seek(int(d.f.Fd()), pos, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) { // no data from pos to the end of the file
			data = d.size
		} else if err != nil {
			return nil, fmt.Errorf("file: SEEK_DATA at %d: %w", pos, err)
		}
		if data < pos {
			return nil, fmt.Errorf("file: SEEK_DATA at %d went back to %d", pos, data)
		}
		add(vfs.Hole, pos, min(data, end))
		if pos = min(data, end); pos == end {
			break
		}
		hole, err := unix.Seek(int(d.f.Fd()), pos, unix.SEEK_HOLE)
		if err != nil {
			return nil, fmt.Errorf("file: SEEK_HOLE at %d: %w", pos, err)
		}
		if hole <= pos {
			return nil, fmt.Errorf("file: SEEK_HOLE at data offset %d answered %d", pos, hole)
		}
		add(vfs.Data, pos, min(hole, end))
		pos = min(hole, end)
	}
	return out, nil
}

// addAndOpen adds dev to the mount and opens its file.
func addAndOpen(t *testing.T, f *FS, name string, dev vfs.Device, readOnly bool) *fileDevice {
	t.Helper()
	if err := f.Add(name, dev, readOnly); err != nil {
		t.Fatal(err)
	}
	fh, err := os.Open(diskPath(f, name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fh.Close() }) // before the unmount mountTest registered
	st, err := fh.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return &fileDevice{f: fh, size: st.Size()}
}

// TestDeviceContractThroughFile runs the device contract suite on what a process reads from
// export files: a memory device with data, zeros and holes exported read-only (page cache and
// readahead) and writable (direct I/O), a VMDK chain made by qemu-img whose expected bytes come
// from `qemu-img convert -O raw`, and an empty device. The file's map must also be the
// device's, with Zero extents shown as holes.
func TestDeviceContractThroughFile(t *testing.T) {
	f := mountTest(t, Options{})
	check := func(t *testing.T, name string, dev vfs.Device, want []byte, readOnly bool) {
		t.Helper()
		fd := addAndOpen(t, f, name, dev, readOnly)
		vfstest.TestDevice(t, fd, want)
		got, exp := fileKinds(t, fd), fileKinds(t, dev)
		t.Logf("map through the file: %v", got)
		if !slices.Equal(got, exp) {
			t.Errorf("the file's map is\n%v\nthe device's map, as data and holes, is\n%v", got, exp)
		}
	}
	t.Run("ReadOnly", func(t *testing.T) {
		dev := testDevice(t)
		check(t, "ro", dev, contents(t, dev), true)
	})
	t.Run("Writable", func(t *testing.T) {
		dev := testDevice(t)
		check(t, "rw", dev, contents(t, dev), false)
	})
	t.Run("VMDKChain", func(t *testing.T) {
		chain, want := vmdktest.QemuChain(t)
		check(t, "chain", chain, want, true)
	})
	t.Run("Empty", func(t *testing.T) {
		check(t, "empty", vfs.NewMemDevice(0), nil, true)
	})
}

// fileKinds returns the extents of the whole device as a file shows them: Data and Hole (for
// Hole and Zero), without depths, neighbours of one kind merged.
func fileKinds(t *testing.T, dev vfs.Device) []vfs.Extent {
	t.Helper()
	var out []vfs.Extent
	for pos := int64(0); pos < dev.Size(); {
		m, err := dev.Extents(context.Background(), pos, dev.Size()-pos)
		if err != nil || len(m) == 0 {
			t.Fatalf("Extents(%d, %d) = %v, %v", pos, dev.Size()-pos, m, err)
		}
		for _, e := range m {
			e.Depth = 0
			if e.Kind == vfs.Zero {
				e.Kind = vfs.Hole
			}
			if n := len(out); n > 0 && out[n-1].Kind == e.Kind && out[n-1].End() == e.Off {
				out[n-1].Len += e.Len
			} else {
				out = append(out, e)
			}
			pos = e.End()
		}
	}
	return out
}
