package vfs

import (
	"context"
	"fmt"
	"io"
	"os"
)

// Optional abilities of devices and sources. A front end (NBD, FUSE) or a decorator finds them
// with a type assertion; a device that lacks one is served without it. Decorators that wrap a
// device (an overlay over a chain) implement an ability when they can honour it for every byte
// they present, usually by asking what they wrap.

// FileMapper is a device that knows where its bytes are stored verbatim in local files (a VMDK
// chain: flat extents and uncompressed sparse grains of local files; an overlay: the blocks
// written to it). A front end can then send those bytes with sendfile(2), from the page cache to
// the socket, instead of reading them into a buffer.
//
// MapFile answers for a prefix of m > 0 bytes of [off, off+length): with f != nil they are bytes
// [fileOff, fileOff+m) of f; with f == nil they must be read with ReadAt. f stays owned by the
// device and open while the device is: callers MUST NOT close it. It MUST be safe for
// concurrent use.
type FileMapper interface {
	MapFile(ctx context.Context, off, length int64) (f *os.File, fileOff, m int64, err error)
}

// Prefetcher is a device that can fetch a range ahead of reads (NBD_CMD_CACHE): when Prefetch
// returns nil the range's data is held locally (in the chunk cache of a remote source, or in the
// page cache of a local file), so reads of it need no further round trip while it stays there.
// Prefetching never changes what the device reads as.
type Prefetcher interface {
	Prefetch(ctx context.Context, off, length int64) error
}

// FastZeroer is a writable device that knows whether zeroing a range is cheaper than writing
// zeros to it (NBD_FLAG_SEND_FAST_ZERO). CanZeroFast MUST be cheap and MUST NOT do I/O.
type FastZeroer interface {
	CanZeroFast(off, length int64) bool
}

// Prioritizer is a source that keeps some ranges longer than others (a chunk cache under a
// budget). Formats name their metadata (headers, grain directories and tables) with Prioritize
// so that evicting cached data never forces a metadata read back over the network.
type Prioritizer interface {
	Prioritize(off, length int64)
}

// Prioritize marks [off, off+length) of src as priority when src can keep ranges (Prioritizer),
// and does nothing otherwise.
func Prioritize(src Source, off, length int64) {
	if p, ok := src.(Prioritizer); ok {
		p.Prioritize(off, length)
	}
}

// prefetchStep bounds one read of ReadPrefetch, and so the memory it uses.
const prefetchStep = 1 << 20

// Prefetch prefetches [off, off+length) of dev: with its own Prefetch when dev is a Prefetcher,
// else with ReadPrefetch.
func Prefetch(ctx context.Context, dev Device, off, length int64) error {
	if p, ok := dev.(Prefetcher); ok {
		return p.Prefetch(ctx, off, length)
	}
	return ReadPrefetch(ctx, dev, off, length)
}

// ReadPrefetch prefetches [off, off+length) of dev by reading its Data extents and dropping
// the bytes: reading a device fills whatever caches lie under it. Holes and zero extents are
// skipped, since reading them fetches nothing. It is the Prefetch of devices with no better
// way (a VMDK chain over a cached source).
func ReadPrefetch(ctx context.Context, dev Device, off, length int64) error {
	if off < 0 || length < 0 || off+length > dev.Size() {
		return fmt.Errorf("prefetch %d bytes at %d of a %d-byte device: %w", length, off, dev.Size(), ErrOutOfRange)
	}
	end := off + length
	var buf []byte
	for pos := off; pos < end; {
		es, err := dev.Extents(ctx, pos, end-pos)
		if err != nil {
			return err
		}
		if len(es) == 0 || es[len(es)-1].End() <= pos {
			return fmt.Errorf("prefetch at %d: no extents: %w", pos, ErrCorrupt)
		}
		for _, e := range es {
			if e.Kind != Data {
				continue
			}
			if buf == nil {
				buf = make([]byte, min(prefetchStep, length))
			}
			for a, b := max(e.Off, pos), min(e.End(), end); a < b; {
				n := min(b-a, int64(len(buf)))
				m, err := dev.ReadAt(ctx, buf[:n], a)
				if int64(m) < n {
					if err == nil || err == io.EOF {
						err = fmt.Errorf("prefetch: %d bytes at %d: short read of %d: %w", n, a, m, ErrTruncated)
					}
					return err
				}
				a += n
			}
		}
		pos = es[len(es)-1].End()
	}
	return nil
}
