package overlay

import (
	"context"
	"fmt"
	"os"

	"github.com/h2kvm/h2kvm/vfs"
)

// MapFile reports where the overlay's bytes at [off, off+length) are stored verbatim in a local
// file, so that a front end can send them with sendfile(2): blocks written to the overlay are
// in the overlay file at their own offset; blocks never written are where the base says, when
// the base can map them. It answers for a prefix of m > 0 bytes; f == nil means those bytes
// must be read with ReadAt (zeroed blocks, or a base that cannot map). f belongs to the overlay
// (or its base): callers MUST NOT close it. A write racing with the use of an answer may or may
// not be seen, as with ReadAt.
func (o *Overlay) MapFile(ctx context.Context, off, length int64) (*os.File, int64, int64, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, 0, err
	}
	if err := o.check("map", off, length); err != nil {
		return nil, 0, 0, err
	}
	if length <= 0 {
		return nil, 0, 0, fmt.Errorf("overlay: map %d bytes at %d: %w", length, off, vfs.ErrOutOfRange)
	}
	end := off + length
	o.mu.RLock()
	runs := o.runsLocked(off/o.bs, (end-1)/o.bs+1)
	o.mu.RUnlock()
	r := runs[0]
	m := min(end, r.End*o.bs) - off
	switch r.State {
	case Data:
		return o.f, off, m, nil
	case Absent:
		bm, ok := o.base.(vfs.FileMapper)
		if !ok {
			return nil, 0, m, nil
		}
		f, fo, n, err := bm.MapFile(ctx, off, m)
		if err != nil {
			return nil, 0, 0, fmt.Errorf("overlay: map base %s at %d: %w", nameOf(o.base), off, err)
		}
		if n <= 0 || n > m {
			n = m // a base breaking the contract loses zero copy, not correctness
			f = nil
		}
		return f, fo, n, nil
	}
	return nil, 0, m, nil
}
