package overlay

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sort"

	"golang.org/x/sys/unix"

	"github.com/h2kvm/h2kvm/vfs"
)

func (o *Overlay) blockLen(i int64) int64 { return min(o.bs, o.size-i*o.bs) }

func (o *Overlay) check(op string, off, n int64) error {
	if o.closed.Load() {
		return fmt.Errorf("overlay: %s: %w", o.cfg.Path, ErrClosed)
	}
	if off < 0 || n < 0 || off > o.size || n > o.size-off {
		return fmt.Errorf("overlay: %s %d bytes at %d on a %d-byte device: %w", op, n, off, o.size, vfs.ErrOutOfRange)
	}
	return nil
}

// run is a range of blocks [first, end) in one state.
type run struct {
	first, end int64
	st         BlockState
}

// runs returns the states of blocks [first, end) as runs. o.mu held (read).
func (o *Overlay) runsLocked(first, end int64) []run {
	var out []run
	add := func(i, j int64, st BlockState) {
		if i >= j {
			return
		}
		if n := len(out); n > 0 && out[n-1].st == st && out[n-1].end == i {
			out[n-1].end = j
			return
		}
		out = append(out, run{i, j, st})
	}
	if int64(len(o.blocks)) < end-first {
		// Sparse map: walk its keys in the range.
		var keys []int64
		for i := range o.blocks {
			if i >= first && i < end {
				keys = append(keys, i)
			}
		}
		slices.Sort(keys)
		pos := first
		for _, i := range keys {
			add(pos, i, Absent)
			add(i, i+1, o.blocks[i])
			pos = i + 1
		}
		add(pos, end, Absent)
		return out
	}
	for i := first; i < end; i++ {
		add(i, i+1, o.blocks[i])
	}
	return out
}

func (o *Overlay) state(i int64) BlockState {
	o.mu.RLock()
	defer o.mu.RUnlock()
	return o.blocks[i]
}

// setState records a block's new state (after its bytes are in the file) and that the file
// needs a sync.
func (o *Overlay) setState(i int64, st BlockState) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.unsynced = true
	if o.blocks[i] == st {
		return
	}
	if st == Absent {
		delete(o.blocks, i)
	} else {
		o.blocks[i] = st
	}
	o.dirty[i] = st
}

// ReadAt reads the overlay merged over the base, following io.ReaderAt.
func (o *Overlay) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if o.closed.Load() {
		return 0, fmt.Errorf("overlay: %s: %w", o.cfg.Path, ErrClosed)
	}
	if off < 0 {
		return 0, fmt.Errorf("overlay: read at negative offset %d: %w", off, vfs.ErrOutOfRange)
	}
	if off >= o.size {
		return 0, io.EOF
	}
	var eof error
	if int64(len(p)) > o.size-off {
		p, eof = p[:o.size-off], io.EOF
	}
	if len(p) == 0 {
		return 0, eof
	}
	end := off + int64(len(p))
	o.mu.RLock()
	runs := o.runsLocked(off/o.bs, (end-1)/o.bs+1)
	o.mu.RUnlock()
	for _, r := range runs {
		lo, hi := max(off, r.first*o.bs), min(end, r.end*o.bs)
		dst := p[lo-off : hi-off]
		switch r.st {
		case Absent:
			if err := o.readBase(ctx, dst, lo); err != nil {
				return 0, err
			}
		case Data:
			if n, err := o.f.ReadAt(dst, lo); n < len(dst) {
				return 0, fmt.Errorf("overlay: read %s: %d of %d bytes at %d: %w", o.cfg.Path, n, len(dst), lo, err)
			}
		default:
			clear(dst)
		}
	}
	return len(p), eof
}

func (o *Overlay) readBase(ctx context.Context, dst []byte, off int64) error {
	n, err := o.base.ReadAt(ctx, dst, off)
	if n == len(dst) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = fmt.Errorf("base ended after %d of %d bytes: %w", n, len(dst), vfs.ErrTruncated)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("overlay: read base %s at %d: %w", nameOf(o.base), off, err)
}

// WriteAt writes p at off into the overlay.
func (o *Overlay) WriteAt(ctx context.Context, p []byte, off int64) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if err := o.check("write", off, int64(len(p))); err != nil {
		return 0, err
	}
	end := off + int64(len(p))
	for pos := off; pos < end; {
		if err := ctx.Err(); err != nil {
			return int(pos - off), err
		}
		i := pos / o.bs
		segEnd := min(end, i*o.bs+o.blockLen(i))
		if err := o.writeBlock(ctx, i, p[pos-off:segEnd-off], pos); err != nil {
			return int(pos - off), err
		}
		o.written.Add(segEnd - pos)
		pos = segEnd
	}
	return len(p), nil
}

// writeBlock writes seg at pos, inside block i. A partial write to a block that is not Data
// builds the whole block (from the base, or zeros) before writing it.
func (o *Overlay) writeBlock(ctx context.Context, i int64, seg []byte, pos int64) error {
	lk := &o.stripes[i%nStripes]
	lk.Lock()
	defer lk.Unlock()
	return o.writeBlockLocked(ctx, i, seg, pos)
}

// writeBlockLocked is writeBlock with block i's stripe lock held.
func (o *Overlay) writeBlockLocked(ctx context.Context, i int64, seg []byte, pos int64) error {
	bOff, bl := i*o.bs, o.blockLen(i)
	st := o.state(i)
	at, data := pos, seg
	if st != Data && int64(len(seg)) != bl {
		buf := make([]byte, bl)
		if st == Absent {
			if err := o.readBase(ctx, buf, bOff); err != nil {
				return err
			}
			o.copyUps.Add(1)
		}
		copy(buf[pos-bOff:], seg)
		at, data = bOff, buf
	}
	if _, err := o.f.WriteAt(data, at); err != nil {
		return fmt.Errorf("overlay: write %s at %d: %w", o.cfg.Path, at, err)
	}
	o.setState(i, Data)
	return nil
}

// Zero makes the range read as zeros and report Zero.
func (o *Overlay) Zero(ctx context.Context, off, length int64) error {
	return o.zeroRange(ctx, "zero", off, length, Zeroed)
}

// Trim makes the range read as zeros; it reports Zero, or what the base reports where whole
// untouched blocks of the base already read as zeros.
func (o *Overlay) Trim(ctx context.Context, off, length int64) error {
	return o.zeroRange(ctx, "trim", off, length, Trimmed)
}

func (o *Overlay) zeroRange(ctx context.Context, op string, off, length int64, target BlockState) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := o.check(op, off, length); err != nil {
		return err
	}
	if length == 0 {
		return nil
	}
	end := off + length
	baseZero, err := o.baseZeros(ctx, off, end)
	if err != nil {
		return err
	}
	for pos := off; pos < end; {
		if err := ctx.Err(); err != nil {
			return err
		}
		i := pos / o.bs
		segEnd := min(end, i*o.bs+o.blockLen(i))
		if err := o.zeroBlock(ctx, i, pos, segEnd, target, baseZero); err != nil {
			return err
		}
		pos = segEnd
	}
	return nil
}

func (o *Overlay) zeroBlock(ctx context.Context, i, pos, segEnd int64, target BlockState, baseZero func(a, b int64) bool) error {
	lk := &o.stripes[i%nStripes]
	lk.Lock()
	defer lk.Unlock()
	bOff, bl := i*o.bs, o.blockLen(i)
	st := o.state(i)
	if st == Zeroed || st == Trimmed {
		return nil // already reads zeros
	}
	if pos == bOff && segEnd-pos == bl {
		if st == Absent && target == Trimmed && baseZero(bOff, bOff+bl) {
			return nil // the base reads zeros here: nothing to hide
		}
		if st == Data {
			if err := o.punch(bOff, bl); err != nil {
				return err
			}
		}
		o.setState(i, target)
		return nil
	}
	if st == Absent && baseZero(pos, segEnd) {
		return nil
	}
	return o.writeBlockLocked(ctx, i, make([]byte, segEnd-pos), pos)
}

// baseZeros returns a function telling whether the base reads [a, b) (within [off, end)) as
// zeros according to its extents.
func (o *Overlay) baseZeros(ctx context.Context, off, end int64) (func(a, b int64) bool, error) {
	var ext []vfs.Extent
	for pos := off; pos < end; {
		es, err := o.base.Extents(ctx, pos, end-pos)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("overlay: extents of base %s at %d: %w", nameOf(o.base), pos, err)
		}
		if len(es) == 0 || es[len(es)-1].End() <= pos {
			return nil, fmt.Errorf("overlay: base %s returned no extents at %d: %w", nameOf(o.base), pos, vfs.ErrCorrupt)
		}
		ext = append(ext, es...)
		pos = es[len(es)-1].End()
	}
	return func(a, b int64) bool {
		k := sort.Search(len(ext), func(k int) bool { return ext[k].End() > a })
		for pos := a; pos < b; k++ {
			if k >= len(ext) || ext[k].Off > pos || ext[k].Kind == vfs.Data {
				return false
			}
			pos = ext[k].End()
		}
		return true
	}, nil
}

func (o *Overlay) punch(off, n int64) error {
	err := unix.Fallocate(int(o.f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
	if err != nil {
		return fmt.Errorf("overlay: punch %d bytes at %d of %s: %w", n, off, o.cfg.Path, err)
	}
	return nil
}

// Extents reports the overlay's blocks over the base's extents (Depth+1).
func (o *Overlay) Extents(ctx context.Context, off, length int64) ([]vfs.Extent, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := o.check("extents", off, 0); err != nil {
		return nil, err
	}
	length = min(length, o.size-off)
	if length <= 0 {
		return nil, nil
	}
	end := off + length
	o.mu.RLock()
	runs := o.runsLocked(off/o.bs, (end-1)/o.bs+1)
	o.mu.RUnlock()
	var out []vfs.Extent
	add := func(e vfs.Extent) {
		if n := len(out); n > 0 && out[n-1].Kind == e.Kind && out[n-1].Depth == e.Depth && out[n-1].End() == e.Off {
			out[n-1].Len += e.Len
			return
		}
		out = append(out, e)
	}
	for _, r := range runs {
		lo, hi := max(off, r.first*o.bs), min(end, r.end*o.bs)
		switch r.st {
		case Data:
			add(vfs.Extent{Off: lo, Len: hi - lo, Kind: vfs.Data})
		case Zeroed, Trimmed:
			add(vfs.Extent{Off: lo, Len: hi - lo, Kind: vfs.Zero})
		case Absent:
			for pos := lo; pos < hi; {
				es, err := o.base.Extents(ctx, pos, hi-pos)
				if err != nil {
					if ctx.Err() != nil {
						return nil, ctx.Err()
					}
					return nil, fmt.Errorf("overlay: extents of base %s at %d: %w", nameOf(o.base), pos, err)
				}
				next := pos
				for _, e := range es {
					a, b := max(e.Off, pos), min(e.End(), hi)
					if a != next || b <= a {
						break
					}
					add(vfs.Extent{Off: a, Len: b - a, Kind: e.Kind, Depth: e.Depth + 1})
					next = b
				}
				if next == pos {
					return nil, fmt.Errorf("overlay: base %s returned no extents at %d: %w", nameOf(o.base), pos, vfs.ErrCorrupt)
				}
				pos = next
			}
		}
	}
	return out, nil
}
