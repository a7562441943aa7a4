package overlay

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/h2kvm/h2kvm/vfs"
)

// Lock order: flushMu, then block stripe locks, then mu.
//   - flushMu serializes Flush and Close.
//   - stripes[i%len] serializes the writers of block i. It is held across the block's I/O (base
//     read for copy-up, overlay pwrite or punch): that is what it is for. Readers never take it.
//     A writer holds one stripe at a time; a zero of whole blocks (lockStripes) takes all of
//     them, in index order, to change the map of a range at once, and does no I/O meanwhile.
//   - mu guards the block map; no I/O is done under it.

// DefaultBlockSize is the overlay block size unless Config says otherwise.
const DefaultBlockSize = 64 << 10

const nStripes = 256

// dirtyMark is the state of the blocks in Overlay.dirty: they changed since the last commit,
// which records their state in Overlay.blocks at the time of the Flush.
const dirtyMark = Data

// Config configures an Overlay.
type Config struct {
	// Path is the sparse overlay file; created if missing.
	Path string
	// BlockSize is the copy-on-write unit (default 64 KiB); a multiple of 4096.
	BlockSize int64
	// Map persists the block map. Nil: nothing is persisted and the overlay starts empty.
	Map MapStore
	// Discard makes Close remove the overlay file and the map (a scratch overlay). A kept
	// overlay is restored by the next Open with the same Path and Map.
	Discard bool
}

// Stats describes an overlay.
type Stats struct {
	DataBlocks    int64  // blocks whose bytes are in the overlay file
	ZeroedBlocks  int64  // blocks that read zeros after Zero
	TrimmedBlocks int64  // blocks that read zeros after Trim
	DirtyBlocks   int64  // block-state changes not yet committed by Flush
	OverlayBytes  int64  // bytes of Data blocks
	BytesWritten  int64  // bytes accepted by WriteAt since Open
	CopyUps       int64  // partial writes that copied a block from the base since Open
	Generation    uint64 // commits of the block map so far
}

// Overlay is a copy-on-write vfs.Writable over a read-only base device.
type Overlay struct {
	// Set once.
	base    vfs.Device
	cfg     Config
	f       *os.File
	size    int64
	bs      int64
	nblocks int64
	stripes [nStripes]sync.Mutex

	flushMu sync.Mutex
	closed  atomic.Bool

	mu       sync.RWMutex
	blocks   *runMap // guarded by mu: the state of every block
	dirty    *runMap // guarded by mu: blocks changed since the last commit (state dirtyMark)
	unsynced bool    // guarded by mu: the file changed since the last fdatasync
	gen      uint64  // guarded by mu

	written, copyUps atomic.Int64
}

var (
	_ vfs.Writable  = (*Overlay)(nil)
	_ vfs.Closer    = (*Overlay)(nil)
	_ vfs.Unwrapper = (*Overlay)(nil)
)

// Open returns an overlay over base backed by cfg.Path. A map recorded in cfg.Map (for the same
// block size and device size) is restored unless cfg.Discard is set, in which case any earlier
// overlay is dropped.
func Open(ctx context.Context, base vfs.Device, cfg Config) (*Overlay, error) {
	if cfg.Path == "" {
		return nil, errors.New("overlay: no overlay file path")
	}
	if cfg.BlockSize <= 0 {
		cfg.BlockSize = DefaultBlockSize
	}
	if cfg.BlockSize%4096 != 0 {
		return nil, fmt.Errorf("overlay: %s: block size %d is not a multiple of 4096", cfg.Path, cfg.BlockSize)
	}
	o := &Overlay{
		base: base, cfg: cfg, size: base.Size(), bs: cfg.BlockSize,
		blocks: newRunMap(nil), dirty: newRunMap(nil),
	}
	o.nblocks = (o.size + o.bs - 1) / o.bs
	layout := o.layout()

	var snap Snapshot
	if cfg.Map != nil {
		if cfg.Discard {
			if err := cfg.Map.Clear(ctx); err != nil {
				return nil, fmt.Errorf("overlay: %s: clear map: %w", cfg.Path, err)
			}
		} else {
			var err error
			if snap, err = cfg.Map.Load(ctx); err != nil {
				return nil, fmt.Errorf("overlay: %s: load map: %w", cfg.Path, err)
			}
		}
	}
	if snap.Layout != (Layout{}) && snap.Layout != layout {
		return nil, fmt.Errorf("overlay: %s: recorded for %d bytes in %d-byte blocks, base %s has %d bytes, block size %d: %w",
			cfg.Path, snap.Layout.Size, snap.Layout.BlockSize, nameOf(base), o.size, o.bs, ErrMismatch)
	}
	f, err := os.OpenFile(cfg.Path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("overlay: %w", err)
	}
	o.f = f
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("overlay: %w", err)
	}
	if len(snap.Runs) > 0 {
		if st.Size() != o.size {
			f.Close()
			return nil, fmt.Errorf("overlay: %s: file has %d bytes, map records %d runs of blocks of a %d-byte device: %w",
				cfg.Path, st.Size(), len(snap.Runs), o.size, ErrMismatch)
		}
		var prev int64
		for _, r := range snap.Runs {
			if r.First < prev || r.End <= r.First || r.End > o.nblocks || r.State == Absent || r.State > Trimmed {
				f.Close()
				return nil, fmt.Errorf("overlay: %s: map records blocks [%d, %d) as %v after block %d (device has %d blocks): %w",
					cfg.Path, r.First, r.End, r.State, prev, o.nblocks, ErrMismatch)
			}
			prev = r.End
		}
		o.blocks = newRunMap(snap.Runs)
		o.gen = snap.Generation
		if err := o.punchUnmapped(); err != nil {
			f.Close()
			return nil, err
		}
		return o, nil
	}
	// Nothing recorded: whatever the file holds is not vouched for.
	if err := f.Truncate(0); err == nil {
		err = f.Truncate(o.size)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("overlay: %s: %w", cfg.Path, err)
	}
	o.gen = snap.Generation
	return o, nil
}

func nameOf(d vfs.Device) string {
	if n, ok := d.(interface{ Name() string }); ok {
		return n.Name()
	}
	return fmt.Sprintf("%T", d)
}

func (o *Overlay) layout() Layout { return Layout{BlockSize: o.bs, Size: o.size} }

// Size returns the size of the device.
func (o *Overlay) Size() int64 { return o.size }

// Path returns the overlay file's path.
func (o *Overlay) Path() string { return o.cfg.Path }

// BlockSize returns the block size.
func (o *Overlay) BlockSize() int64 { return o.bs }

// Unwrap returns the base device.
func (o *Overlay) Unwrap() vfs.Device { return o.base }

// Stats returns the state of the overlay.
func (o *Overlay) Stats() Stats {
	o.mu.RLock()
	defer o.mu.RUnlock()
	s := Stats{DirtyBlocks: o.dirty.blocks(dirtyMark), Generation: o.gen,
		BytesWritten: o.written.Load(), CopyUps: o.copyUps.Load(),
		DataBlocks: o.blocks.blocks(Data), ZeroedBlocks: o.blocks.blocks(Zeroed), TrimmedBlocks: o.blocks.blocks(Trimmed)}
	s.OverlayBytes = s.DataBlocks * o.bs
	if last := o.nblocks - 1; last >= 0 && o.blocks.get(last) == Data {
		s.OverlayBytes -= o.bs - o.blockLen(last)
	}
	return s
}

// Flush makes every write, zero and trim completed before Flush was called durable: the overlay
// file is fdatasync'ed, then the block-state changes are committed by one MapStore Commit (as
// runs; the store may split it, see MapStore).
func (o *Overlay) Flush(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	o.flushMu.Lock()
	defer o.flushMu.Unlock()
	if o.closed.Load() {
		return fmt.Errorf("overlay: %s: %w", o.cfg.Path, ErrClosed)
	}
	return o.flushLocked(ctx)
}

func (o *Overlay) flushLocked(ctx context.Context) error {
	o.mu.Lock()
	var updates []Run
	for _, d := range o.dirty.all() {
		updates = append(updates, o.blocks.between(d.First, d.End)...)
	}
	unsynced := o.unsynced
	o.dirty, o.unsynced = newRunMap(nil), false
	o.mu.Unlock()
	// A failed flush marks its blocks dirty again; the next one commits their state then.
	restore := func() {
		o.mu.Lock()
		for _, u := range updates {
			o.dirty.set(u.First, u.End, dirtyMark)
		}
		o.unsynced = o.unsynced || unsynced
		o.mu.Unlock()
	}
	if unsynced {
		if err := unix.Fdatasync(int(o.f.Fd())); err != nil {
			restore()
			return fmt.Errorf("overlay: %s: sync: %w", o.cfg.Path, err)
		}
	}
	if o.cfg.Map == nil || len(updates) == 0 {
		return nil
	}
	gen, err := o.cfg.Map.Commit(ctx, o.layout(), updates)
	if err != nil {
		restore()
		return fmt.Errorf("overlay: %s: commit %d runs of blocks: %w", o.cfg.Path, len(updates), err)
	}
	o.mu.Lock()
	o.gen = gen
	o.mu.Unlock()
	return nil
}

// Close flushes a kept overlay, or removes the file and map of a discarded one, and closes the
// overlay file. It does not close the base.
func (o *Overlay) Close() error {
	o.flushMu.Lock()
	defer o.flushMu.Unlock()
	if o.closed.Swap(true) {
		return nil
	}
	ctx := context.Background()
	var err error
	if !o.cfg.Discard {
		err = o.flushLocked(ctx)
	}
	if cerr := o.f.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("overlay: %s: %w", o.cfg.Path, cerr)
	}
	if o.cfg.Discard {
		if rerr := os.Remove(o.cfg.Path); rerr != nil && err == nil {
			err = fmt.Errorf("overlay: %w", rerr)
		}
		if o.cfg.Map != nil {
			if cerr := o.cfg.Map.Clear(ctx); cerr != nil && err == nil {
				err = fmt.Errorf("overlay: %s: clear map: %w", o.cfg.Path, cerr)
			}
		}
	}
	return err
}

// punchUnmapped frees file ranges of blocks that are not Data: bytes a crash left behind
// between a write and the Flush that would have recorded it.
func (o *Overlay) punchUnmapped() error {
	fd := int(o.f.Fd())
	for off := int64(0); off < o.size; {
		d, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("overlay: %s: seek data: %w", o.cfg.Path, err)
		}
		h, err := unix.Seek(fd, d, unix.SEEK_HOLE)
		if err != nil {
			return fmt.Errorf("overlay: %s: seek hole: %w", o.cfg.Path, err)
		}
		for _, r := range o.blocks.between(d/o.bs, min(o.nblocks, (h+o.bs-1)/o.bs)) {
			if r.State != Data {
				if err := o.punch(r.First*o.bs, min(o.size, r.End*o.bs)-r.First*o.bs); err != nil {
					return err
				}
			}
		}
		off = max(h, off+1)
	}
	return nil
}
