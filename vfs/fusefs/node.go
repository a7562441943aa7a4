package fusefs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/h2kvm/h2kvm/vfs"
)

// fallocate(2) mode bits (linux/falloc.h).
const (
	fallocKeepSize  = 0x01
	fallocPunchHole = 0x02
	fallocZeroRange = 0x10
)

// lseek(2) whence values for sparse files (linux/fs.h).
const (
	seekData = 3
	seekHole = 4
)

// export is one device presented as MOUNT/<name>/disk.raw.
type export struct {
	// set once
	name  string
	dev   vfs.Device
	w     vfs.Writable // nil for a read-only export
	size  int64
	added time.Time
	log   *slog.Logger
	uid   uint32
	gid   uint32

	mu       sync.Mutex
	open     int           // guarded by mu; handles opened and not yet released
	draining bool          // guarded by mu; Remove in progress or done: no new opens
	idle     chan struct{} // guarded by mu; made by Remove, closed when open drops to 0
}

// acquire registers a new open handle; it fails once Remove has started.
func (e *export) acquire() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.draining {
		return false
	}
	e.open++
	return true
}

// release is called by go-fuse after the last request on a handle has finished.
func (e *export) release() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.open--
	if e.open == 0 && e.idle != nil {
		close(e.idle)
		e.idle = nil
	}
}

// fail logs a device error (cancellation excepted) and returns its errno.
func (e *export) fail(op string, off, n int64, err error) syscall.Errno {
	errno := toErrno(err)
	if errno != syscall.EINTR {
		e.log.Warn("fusefs: device error", "export", e.name, "op", op, "offset", off,
			"length", n, "errno", errno.Error(), "err", err)
	}
	return errno
}

func (e *export) fillAttr(a *fuse.Attr) {
	a.Mode = syscall.S_IFREG | 0o644
	if e.w == nil {
		a.Mode = syscall.S_IFREG | 0o444
	}
	a.Size = uint64(e.size)
	// st_blocks is one 512-byte block short of the size. The real allocation would walk every
	// extent (fetching the metadata of a remote chain) on each stat; a value below the size is
	// what tells cp and tar to ask SEEK_DATA/SEEK_HOLE, which answer exactly. It is never 0 for
	// a non-empty file: tar reads st_blocks == 0 as "all hole" and would skip the data.
	a.Blocks = max(uint64(e.size)/512, 2) - 1 // cp tests st_blocks < st_size/512
	if e.size == 0 {
		a.Blocks = 0
	}
	a.Blksize = 4096
	a.Nlink = 1
	a.Owner = fuse.Owner{Uid: e.uid, Gid: e.gid}
	a.SetTimes(&e.added, &e.added, &e.added)
}

// diskNode is the inode of disk.raw. Requests on it run only through handles (see handle).
type diskNode struct {
	fs.Inode
	e *export
}

var (
	_ fs.NodeOpener    = (*diskNode)(nil)
	_ fs.NodeGetattrer = (*diskNode)(nil)
	_ fs.NodeSetattrer = (*diskNode)(nil)
)

func (n *diskNode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	e := n.e
	writing := flags&syscall.O_ACCMODE != syscall.O_RDONLY || flags&syscall.O_TRUNC != 0
	if writing && e.w == nil {
		return nil, 0, syscall.EROFS
	}
	if flags&syscall.O_TRUNC != 0 && e.size != 0 {
		return nil, 0, syscall.EINVAL
	}
	if !e.acquire() {
		return nil, 0, syscall.ENOENT
	}
	var fuseFlags uint32 = fuse.FOPEN_KEEP_CACHE
	if e.w != nil {
		fuseFlags = fuse.FOPEN_DIRECT_IO | fuse.FOPEN_PARALLEL_DIRECT_WRITES
	}
	return &handle{e: e}, fuseFlags, 0
}

func (n *diskNode) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.e.fillAttr(&out.Attr)
	return 0
}

func (n *diskNode) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	e := n.e
	if e.w == nil {
		return syscall.EROFS
	}
	if size, ok := in.GetSize(); ok && size != uint64(e.size) {
		return syscall.EINVAL
	}
	if _, ok := in.GetMode(); ok {
		return syscall.EPERM
	}
	if uid, ok := in.GetUID(); ok && uid != e.uid {
		return syscall.EPERM
	}
	if gid, ok := in.GetGID(); ok && gid != e.gid {
		return syscall.EPERM
	}
	e.fillAttr(&out.Attr)
	return 0
}

// handle is one open file description of disk.raw. go-fuse waits for every request on a handle
// to finish before it calls Release, so the export's open count bounds device use.
type handle struct {
	e *export
}

var (
	_ fs.FileReader    = (*handle)(nil)
	_ fs.FileWriter    = (*handle)(nil)
	_ fs.FileFsyncer   = (*handle)(nil)
	_ fs.FileAllocater = (*handle)(nil)
	_ fs.FileLseeker   = (*handle)(nil)
	_ fs.FileReleaser  = (*handle)(nil)
)

func (h *handle) Release(ctx context.Context) syscall.Errno {
	h.e.release()
	return 0
}

func (h *handle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	e := h.e
	if off < 0 {
		return nil, syscall.EINVAL
	}
	if off >= e.size {
		return fuse.ReadResultData(nil), 0
	}
	p := dest[:min(int64(len(dest)), e.size-off)]
	n, err := e.dev.ReadAt(ctx, p, off)
	if err != nil && !(errors.Is(err, io.EOF) && n == len(p)) {
		return nil, e.fail("read", off, int64(len(p)), err)
	}
	return fuse.ReadResultData(p[:n]), 0
}

func (h *handle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	e := h.e
	if e.w == nil {
		return 0, syscall.EROFS
	}
	if off < 0 {
		return 0, syscall.EINVAL
	}
	if len(data) == 0 {
		return 0, 0
	}
	if off >= e.size {
		return 0, syscall.ENOSPC
	}
	p := data[:min(int64(len(data)), e.size-off)]
	n, err := e.w.WriteAt(ctx, p, off)
	if err != nil {
		return uint32(n), e.fail("write", off, int64(len(p)), err)
	}
	return uint32(n), 0
}

func (h *handle) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	e := h.e
	if e.w == nil {
		return 0 // nothing was written through this export
	}
	if err := e.w.Flush(ctx); err != nil {
		return e.fail("flush", 0, 0, err)
	}
	return 0
}

func (h *handle) Allocate(ctx context.Context, off, size uint64, mode uint32) syscall.Errno {
	e := h.e
	if e.w == nil {
		return syscall.EROFS
	}
	if mode&^uint32(fallocKeepSize|fallocPunchHole|fallocZeroRange) != 0 ||
		mode&(fallocPunchHole|fallocZeroRange) == fallocPunchHole|fallocZeroRange {
		return syscall.EOPNOTSUPP
	}
	end := off + size
	if end < off || off > uint64(e.size) || end > uint64(e.size) {
		if mode&fallocKeepSize == 0 {
			return syscall.ENOSPC // the file cannot grow
		}
		end = min(max(end, off), uint64(e.size))
		off = min(off, uint64(e.size))
	}
	o, n := int64(off), int64(end-off)
	if n == 0 {
		return 0
	}
	var err error
	switch {
	case mode&fallocPunchHole != 0:
		err = e.w.Trim(ctx, o, n)
	case mode&fallocZeroRange != 0:
		err = e.w.Zero(ctx, o, n)
	default:
		return 0 // preallocation: writes allocate on their own
	}
	if err != nil {
		return e.fail(fmt.Sprintf("fallocate(%#x)", mode), o, n, err)
	}
	return 0
}

// Lseek answers SEEK_DATA and SEEK_HOLE; the kernel handles the other whence values itself.
func (h *handle) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	e := h.e
	if whence != seekData && whence != seekHole {
		return 0, syscall.EINVAL
	}
	if off >= uint64(e.size) {
		return 0, syscall.ENXIO
	}
	wantData := whence == seekData
	for pos := int64(off); pos < e.size; {
		exts, err := e.dev.Extents(ctx, pos, e.size-pos)
		if err != nil {
			return 0, e.fail("lseek", pos, e.size-pos, err)
		}
		next := pos
		for _, x := range exts {
			if x.End() <= pos {
				continue
			}
			if (x.Kind == vfs.Data) == wantData {
				return uint64(max(x.Off, pos)), 0
			}
			next = x.End()
		}
		if next <= pos {
			return 0, e.fail("lseek", pos, e.size-pos,
				fmt.Errorf("fusefs: extents at %d made no progress: %w", pos, vfs.ErrCorrupt))
		}
		pos = next
	}
	if wantData {
		return 0, syscall.ENXIO // no data after off
	}
	return uint64(e.size), 0 // the implicit hole at the end of the file
}
