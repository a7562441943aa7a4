package cache

import (
	"errors"
	"os"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Fetched chunks are written to the cache file with O_DIRECT where the file system allows it:
// a chunk goes from the fetch buffer to the disk without a copy into the page cache (measured
// here: the buffered pwrite was about half of the daemon's CPU during a cold remote read). The
// page cache then no longer holds what was just fetched, so the chunks fetched last stay in
// memory (recent) and serve the readers that follow a sequential stream or wait for a
// read-ahead; older chunks are read back from the file.

// dioAlign is the alignment O_DIRECT needs of buffers, offsets and lengths (the logical block
// size of any disk we meet is at most 4096).
const dioAlign = 4096

// directWriter writes aligned chunks through a second, O_DIRECT descriptor of the cache file.
// Reads, syncs and hole punching keep using the buffered descriptor: fdatasync covers the
// inode whichever descriptor wrote, and a direct write drops any stale cached pages.
type directWriter struct {
	f   *os.File    // nil: O_DIRECT unavailable
	off atomic.Bool // a direct write failed with EINVAL: buffered from then on
}

func openDirect(path string) *directWriter {
	f, err := os.OpenFile(path, os.O_WRONLY|unix.O_DIRECT, 0)
	if err != nil {
		return &directWriter{} // tmpfs and some FUSE file systems refuse O_DIRECT
	}
	return &directWriter{f: f}
}

// writeAt writes buf at off with O_DIRECT when buf, off and len(buf) are aligned; it reports
// false when the caller must write buf the buffered way.
func (d *directWriter) writeAt(buf []byte, off int64) (bool, error) {
	if d.f == nil || d.off.Load() || len(buf)%dioAlign != 0 || off%dioAlign != 0 || !aligned(buf) {
		return false, nil
	}
	if _, err := d.f.WriteAt(buf, off); err != nil {
		if errors.Is(err, unix.EINVAL) {
			d.off.Store(true)
			return false, nil
		}
		return true, err
	}
	return true, nil
}

func (d *directWriter) close() {
	if d.f != nil {
		d.f.Close()
	}
}

func aligned(b []byte) bool {
	return len(b) == 0 || uintptr(unsafe.Pointer(unsafe.SliceData(b)))%dioAlign == 0
}

// alignedBuf returns a buffer of n bytes whose first byte is dioAlign-aligned.
func alignedBuf(n int64) []byte {
	b := make([]byte, n+dioAlign)
	skip := int64(0)
	if r := int64(uintptr(unsafe.Pointer(unsafe.SliceData(b))) % dioAlign); r != 0 {
		skip = dioAlign - r
	}
	return b[skip : skip+n : skip+n]
}

// chunkBuf holds the bytes of one fetched chunk. Buffers are recycled through Cache.bufs once
// nobody uses them: the fetcher until it has copied its part, c.recent while the chunk is kept,
// each reader while it copies. refs is guarded by the Budget's mu.
type chunkBuf struct {
	b    []byte
	refs int
}

// getBuf returns a buffer for chunk bytes of length n, with one reference (the caller's).
func (c *Cache) getBuf(n int64) *chunkBuf {
	cb, _ := c.bufs.Get().(*chunkBuf)
	if cb == nil {
		cb = &chunkBuf{b: alignedBuf(c.cfg.ChunkSize)}
	}
	cb.b = cb.b[:n]
	cb.refs = 1
	return cb
}

// releaseLocked drops one reference to cb, recycling it with the last. b.mu held.
func (c *Cache) releaseLocked(cb *chunkBuf) {
	cb.refs--
	if cb.refs == 0 {
		c.bufs.Put(cb)
	}
}

func (c *Cache) release(cb *chunkBuf) {
	c.b.mu.Lock()
	c.releaseLocked(cb)
	c.b.mu.Unlock()
}

// keepRecentLocked keeps the bytes of the just stored chunk ch in memory, dropping those of the
// oldest kept chunk when c.recent is full. b.mu held.
func (c *Cache) keepRecentLocked(ch *chunk, cb *chunkBuf) {
	if cap(c.recent) == 0 {
		return
	}
	if len(c.recent) == cap(c.recent) {
		c.dropRecentLocked(c.recent[0])
		c.recent = append(c.recent[:0], c.recent[1:]...)
	}
	cb.refs++
	ch.mem = cb
	c.recent = append(c.recent, ch)
}

func (c *Cache) dropRecentLocked(ch *chunk) {
	if ch.mem != nil {
		c.releaseLocked(ch.mem)
		ch.mem = nil
	}
}
