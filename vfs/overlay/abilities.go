package overlay

import (
	"context"
	"fmt"

	"github.com/h2kvm/h2kvm/vfs"
)

var (
	_ vfs.FileMapper = (*Overlay)(nil)
	_ vfs.Prefetcher = (*Overlay)(nil)
	_ vfs.FastZeroer = (*Overlay)(nil)
)

// Prefetch fetches the base's bytes under [off, off+length) that the overlay does not hold
// (blocks never written), so later reads of them are local; blocks written, zeroed or trimmed
// are skipped. The base is asked with vfs.Prefetch.
func (o *Overlay) Prefetch(ctx context.Context, off, length int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := o.check("prefetch", off, length); err != nil {
		return err
	}
	if length == 0 {
		return nil
	}
	end := off + length
	o.mu.RLock()
	runs := o.runsLocked(off/o.bs, (end-1)/o.bs+1)
	o.mu.RUnlock()
	for _, r := range runs {
		if r.State != Absent {
			continue
		}
		a, b := max(off, r.First*o.bs), min(end, r.End*o.bs)
		if err := vfs.Prefetch(ctx, o.base, a, b-a); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("overlay: prefetch base %s at %d: %w", nameOf(o.base), a, err)
		}
	}
	return nil
}

// CanZeroFast reports whether zeroing [off, off+length) only changes the block map: true when
// every block it touches partly already reads as zeros in the overlay. Whole blocks are always
// zeroed in the map; a partly covered block otherwise needs its base bytes read and rewritten.
func (o *Overlay) CanZeroFast(off, length int64) bool {
	if length <= 0 || off < 0 || off+length > o.size {
		return length == 0
	}
	end := off + length
	first, last := off/o.bs, (end-1)/o.bs
	partial := func(i int64) bool {
		bOff := i * o.bs
		return !(max(off, bOff) == bOff && min(end, bOff+o.blockLen(i)) == bOff+o.blockLen(i))
	}
	for _, i := range []int64{first, last} {
		if partial(i) {
			if st := o.state(i); st != Zeroed && st != Trimmed {
				return false
			}
		}
	}
	return true
}
