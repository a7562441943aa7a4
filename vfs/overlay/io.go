package overlay

import (
	"context"
	"fmt"
	"io"
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

// runsLocked returns the states of blocks [first, end) as runs. o.mu held (read).
func (o *Overlay) runsLocked(first, end int64) []Run { return o.blocks.between(first, end) }

func (o *Overlay) state(i int64) BlockState {
	o.mu.RLock()
	defer o.mu.RUnlock()
	return o.blocks.get(i)
}

// setState records a block's new state (after its bytes are in the file) and that the file
// needs a sync.
func (o *Overlay) setState(i int64, st BlockState) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.unsynced = true
	if o.blocks.get(i) == st {
		return
	}
	o.blocks.set(i, i+1, st)
	o.dirty.set(i, i+1, dirtyMark)
}

// lockStripes takes every stripe lock, in index order; unlockStripes releases them.
func (o *Overlay) lockStripes() {
	for i := range o.stripes {
		o.stripes[i].Lock()
	}
}

func (o *Overlay) unlockStripes() {
	for i := range o.stripes {
		o.stripes[i].Unlock()
	}
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
		lo, hi := max(off, r.First*o.bs), min(end, r.End*o.bs)
		dst := p[lo-off : hi-off]
		switch r.State {
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
	// Blocks [.., wholeEnd) end inside the range.
	wholeEnd := end / o.bs
	if end == o.size {
		wholeEnd = o.nblocks
	}
	for pos := off; pos < end; {
		if err := ctx.Err(); err != nil {
			return err
		}
		i := pos / o.bs
		segEnd := min(end, i*o.bs+o.blockLen(i))
		if pos == i*o.bs && i < wholeEnd {
			if err := o.zeroWhole(ctx, i, wholeEnd, target, baseZero); err != nil {
				return err
			}
			pos = min(end, wholeEnd*o.bs)
			continue
		}
		if err := o.zeroBlock(ctx, i, pos, segEnd, target, baseZero.zero); err != nil {
			return err
		}
		pos = segEnd
	}
	return nil
}

// zeroWhole zeroes or trims the whole blocks [first, end) in runs, so that zeroing a whole
// disk costs one run: blocks that are Absent change state in the map at once (with every
// stripe lock held, so no write to them is half done), blocks already zeroed or trimmed stay
// as they are, and Data blocks are punched one at a time by zeroBlock (they cost a block of
// file each already).
func (o *Overlay) zeroWhole(ctx context.Context, first, end int64, target BlockState, base baseExtents) error {
	var data []Run
	o.lockStripes()
	o.mu.Lock()
	for _, r := range o.blocks.between(first, end) {
		switch r.State {
		case Data:
			data = append(data, r)
		case Absent:
			set := []Run{r}
			if target == Trimmed {
				set = base.dataBlocks(r.First, r.End, o.bs, o.size) // a trim leaves the base's zeros Absent
			}
			for _, s := range set {
				o.blocks.set(s.First, s.End, target)
				o.dirty.set(s.First, s.End, dirtyMark)
			}
		}
	}
	o.mu.Unlock()
	o.unlockStripes()
	for _, r := range data {
		for i := r.First; i < r.End; i++ {
			if err := ctx.Err(); err != nil {
				return err
			}
			bOff := i * o.bs
			if err := o.zeroBlock(ctx, i, bOff, bOff+o.blockLen(i), target, base.zero); err != nil {
				return err
			}
		}
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

// baseExtents are the base's extents over a range being zeroed or trimmed.
type baseExtents []vfs.Extent

// baseZeros returns the base's extents over [off, end).
func (o *Overlay) baseZeros(ctx context.Context, off, end int64) (baseExtents, error) {
	var ext baseExtents
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
	return ext, nil
}

// zero tells whether the base reads [a, b) (within the range asked for) as zeros.
func (ext baseExtents) zero(a, b int64) bool {
	k := sort.Search(len(ext), func(k int) bool { return ext[k].End() > a })
	for pos := a; pos < b; k++ {
		if k >= len(ext) || ext[k].Off > pos || ext[k].Kind == vfs.Data {
			return false
		}
		pos = ext[k].End()
	}
	return true
}

// dataBlocks returns, as runs (of state Trimmed), the blocks of [first, end) of size bs (on a
// device of size bytes) that the base does not wholly read as zeros: those touching a Data
// extent or a gap in the extents.
func (ext baseExtents) dataBlocks(first, end, bs, size int64) []Run {
	var out []Run
	add := func(a, b int64) { // bytes [a, b)
		i, j := max(first, a/bs), min(end, (b+bs-1)/bs)
		if i >= j {
			return
		}
		if n := len(out); n > 0 && out[n-1].End >= i {
			out[n-1].End = max(out[n-1].End, j)
			return
		}
		out = append(out, Run{i, j, Trimmed})
	}
	pos, stop := first*bs, min(end*bs, size)
	for k := sort.Search(len(ext), func(k int) bool { return ext[k].End() > pos }); pos < stop; k++ {
		if k >= len(ext) {
			add(pos, stop)
			break
		}
		e := ext[k]
		if e.Off > pos {
			add(pos, e.Off)
		}
		if e.Kind == vfs.Data {
			add(e.Off, e.End())
		}
		pos = max(pos, e.End())
	}
	return out
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
		lo, hi := max(off, r.First*o.bs), min(end, r.End*o.bs)
		switch r.State {
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
