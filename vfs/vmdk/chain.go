package vmdk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"github.com/h2kvm/h2kvm/vfs"
)

// Options tune Open.
type Options struct {
	// IgnoreCIDMismatch opens a chain whose parentCID does not match its parent's CID (the parent
	// was modified after the snapshot was taken, so the child's view may be inconsistent). The
	// mismatch is still reported by Info as a warning.
	IgnoreCIDMismatch bool
	// MaxLinks bounds the chain length; 0 means DefaultMaxLinks.
	MaxLinks int
	// MetadataBudget bounds, in bytes, the metadata the whole chain holds in memory while open:
	// grain directories and the grain maps rebuilt from streams without a footer (grain tables
	// read on demand live in fixed-size per-extent caches and are not counted). A chain that
	// needs more is refused at Open with vfs.ErrUnsupported. 0 means DefaultMetadataBudget.
	MetadataBudget int64
}

// DefaultMaxLinks is the chain length Open accepts by default (VMware allows 32 snapshots).
const DefaultMaxLinks = 256

// Chain is a VMDK snapshot chain flattened into one read-only device: each range reads from the
// topmost link that holds it. Links[0] is the file Open was given; the last link is the base.
//
// A Chain is safe for concurrent use. It implements vfs.Device and vfs.Closer.
type Chain struct {
	// set once by Open
	links    []*link
	parents  []string // parents[i]: resolved name of links[i+1] as found from links[i]'s hint
	size     int64
	warnings []string
}

var (
	_ vfs.Device = (*Chain)(nil)
	_ vfs.Closer = (*Chain)(nil)
)

// Open opens the VMDK at name (a text descriptor, or a monolithicSparse / streamOptimized file
// that embeds its descriptor, or a bare sparse extent) and every parent its
// parentFileNameHint names, all through o.
//
// Parent hints are resolved with o.Resolve relative to the child. A relative hint is followed
// as written (one that leaves the Opener's folder tree is refused with vfs.ErrChain); if it
// names no file, the hint's base name next to the child is tried. Absolute hints and Windows
// paths (C:\..., backslashes) are host-specific: they are tried as written (POSIX only) and
// then by base name next to the child.
//
// Errors: vfs.ErrNotFound (a file or parent is missing), vfs.ErrCorrupt / vfs.ErrTruncated /
// vfs.ErrUnsupported (a file is bad), vfs.ErrChain (a cycle, a CID mismatch, a hint escaping the
// root, too many links). Every error names the file concerned.
func Open(ctx context.Context, o vfs.Opener, name string, opt Options) (*Chain, error) {
	maxLinks := opt.MaxLinks
	if maxLinks <= 0 {
		maxLinks = DefaultMaxLinks
	}
	c := &Chain{}
	b := newMetaBudget(opt.MetadataBudget)
	top, err := openLink(ctx, o, name, b)
	if err != nil {
		return nil, err
	}
	c.links = []*link{top}
	seen := map[string]bool{name: true}
	for cur := top; cur.desc != nil && cur.desc.ParentFileNameHint != ""; {
		if len(c.links) >= maxLinks {
			c.Close()
			return nil, fmt.Errorf("vmdk: %s: chain longer than %d links: %w", name, maxLinks, vfs.ErrChain)
		}
		parent, pname, err := openParent(ctx, o, cur, seen, b)
		if err != nil {
			c.Close()
			return nil, err
		}
		seen[pname] = true
		c.links = append(c.links, parent)
		c.parents = append(c.parents, pname)
		if err := c.checkPair(cur, parent, opt); err != nil {
			c.Close()
			return nil, err
		}
		cur = parent
	}
	c.size = top.size
	return c, nil
}

// checkPair checks a child against its parent: CID and size.
func (c *Chain) checkPair(child, parent *link, opt Options) error {
	switch {
	case parent.desc == nil:
		c.warnings = append(c.warnings, fmt.Sprintf("%s has no descriptor: cannot check %s's parentCID", parent.name, child.name))
	case child.desc.ParentCID != parent.desc.CID:
		err := fmt.Errorf("vmdk: %s: parentCID %08x does not match CID %08x of its parent %s (the parent changed after the snapshot): %w",
			child.name, child.desc.ParentCID, parent.desc.CID, parent.name, vfs.ErrChain)
		if !opt.IgnoreCIDMismatch {
			return err
		}
		c.warnings = append(c.warnings, "ignored: "+err.Error())
	}
	if parent.size != child.size {
		c.warnings = append(c.warnings, fmt.Sprintf("%s is %d bytes, its parent %s is %d bytes (beyond the parent's end reads zeros)",
			child.name, child.size, parent.name, parent.size))
	}
	return nil
}

// openParent opens the parent that child's hint names.
func openParent(ctx context.Context, o vfs.Opener, child *link, seen map[string]bool, b *metaBudget) (*link, string, error) {
	hint := child.desc.ParentFileNameHint
	windows := strings.Contains(hint, `\`) || len(hint) >= 2 && hint[1] == ':'
	base := hint[strings.LastIndexAny(hint, `/\`)+1:]
	var cands []string
	switch {
	case windows:
		cands = []string{base}
	case path.IsAbs(hint):
		cands = []string{hint, base}
	default:
		cands = []string{hint}
		if base != hint {
			cands = append(cands, base)
		}
	}
	var firstErr error
	for i, cand := range cands {
		pname, err := o.Resolve(child.name, cand)
		if err != nil {
			if i == 0 && !windows && !path.IsAbs(hint) {
				// A relative hint that leaves the allowed tree is refused, not second-guessed.
				return nil, "", fmt.Errorf("vmdk: %s: parent hint %q: %w", child.name, hint, err)
			}
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		if seen[pname] {
			return nil, "", fmt.Errorf("vmdk: %s: parent hint %q leads back to %s (a cycle): %w", child.name, hint, pname, vfs.ErrChain)
		}
		src, err := o.Open(ctx, pname)
		if err != nil {
			if !errors.Is(err, vfs.ErrNotFound) || ctx.Err() != nil {
				return nil, "", fmt.Errorf("vmdk: parent of %s: %w", child.name, err)
			}
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		p, err := openLinkSource(ctx, o, pname, src, b)
		if err != nil {
			src.Close()
			return nil, "", fmt.Errorf("vmdk: parent of %s: %w", child.name, err)
		}
		return p, pname, nil
	}
	return nil, "", fmt.Errorf("vmdk: %s: parent %q not found (tried %s): %w", child.name, hint, strings.Join(cands, ", "), firstErr)
}

// Size returns the virtual size of the disk: that of the top link.
func (c *Chain) Size() int64 { return c.size }

// Len returns the number of links.
func (c *Chain) Len() int { return len(c.links) }

// Close closes every file of the chain.
func (c *Chain) Close() error {
	var first error
	for _, l := range c.links {
		if err := l.close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// ReadAt reads the flattened disk. A read that reaches Size returns the bytes up to Size and
// io.EOF.
func (c *Chain) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, fmt.Errorf("vmdk: read at negative offset %d: %w", off, vfs.ErrOutOfRange)
	}
	if off >= c.size {
		return 0, io.EOF
	}
	var eof error
	if int64(len(p)) > c.size-off {
		p, eof = p[:c.size-off], io.EOF
	}
	if err := c.read(ctx, 0, p, off); err != nil {
		return 0, err
	}
	return len(p), eof
}

// read fills p from link depth and, where it has holes, from the links below.
func (c *Chain) read(ctx context.Context, depth int, p []byte, off int64) error {
	for len(p) > 0 {
		if depth == len(c.links) || off >= c.links[depth].size {
			clear(p)
			return nil
		}
		l := c.links[depth]
		m, err := l.mapRange(ctx, off, int64(len(p)))
		if err != nil {
			return err
		}
		for _, e := range m {
			sub := p[e.Off-off : e.End()-off]
			switch e.Kind {
			case vfs.Data:
				err = l.readAt(ctx, sub, e.Off)
			case vfs.Zero:
				clear(sub)
			case vfs.Hole:
				err = c.read(ctx, depth+1, sub, e.Off)
			}
			if err != nil {
				return err
			}
		}
		done := m[len(m)-1].End() - off
		p, off = p[done:], off+done
	}
	return nil
}

// maxExtents and maxMapCalls bound the size of and the work behind one Extents answer;
// callers loop for the rest.
const (
	maxExtents  = 8192
	maxMapCalls = 64
)

var errEnough = errors.New("enough extents")

// Extents reports Data, Zero and Hole ranges of [off, off+length) with the depth of the link
// supplying each (a Hole has depth Len()). It may cover only a prefix of the range.
func (c *Chain) Extents(ctx context.Context, off, length int64) ([]vfs.Extent, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if off < 0 || off > c.size || length < 0 {
		return nil, fmt.Errorf("vmdk: extents at %d+%d outside size %d: %w", off, length, c.size, vfs.ErrOutOfRange)
	}
	var out []vfs.Extent
	budget := maxMapCalls
	err := c.extents(ctx, 0, off, min(length, c.size-off), &out, &budget)
	if err != nil && err != errEnough {
		return nil, err
	}
	return out, nil
}

func (c *Chain) extents(ctx context.Context, depth int, off, length int64, out *[]vfs.Extent, budget *int) error {
	add := func(e vfs.Extent) error {
		if n := len(*out); n > 0 && (*out)[n-1].Kind == e.Kind && (*out)[n-1].Depth == e.Depth {
			(*out)[n-1].Len += e.Len
			return nil
		}
		if len(*out) >= maxExtents {
			return errEnough
		}
		*out = append(*out, e)
		return nil
	}
	for length > 0 {
		if depth == len(c.links) || off >= c.links[depth].size {
			return add(vfs.Extent{Off: off, Len: length, Kind: vfs.Hole, Depth: len(c.links)})
		}
		if *budget <= 0 && len(*out) > 0 {
			return errEnough
		}
		*budget--
		m, err := c.links[depth].mapRange(ctx, off, length)
		if err != nil {
			return err
		}
		for _, e := range m {
			if e.Kind == vfs.Hole {
				err = c.extents(ctx, depth+1, e.Off, e.Len, out, budget)
			} else {
				e.Depth = depth
				err = add(e)
			}
			if err != nil {
				return err
			}
		}
		done := m[len(m)-1].End() - off
		off, length = off+done, length-done
	}
	return nil
}

// fileMapper is an extentReader whose data lies verbatim in a local file (flat extents,
// uncompressed sparse ones). mapFile returns the file and the file offset of the bytes at off
// for a prefix of m bytes of [off, off+length); f is nil when the bytes at off are not stored
// verbatim (not allocated, compressed, a remote source).
type fileMapper interface {
	mapFile(ctx context.Context, off, length int64) (f *os.File, fileOff, m int64, err error)
}

// MapFile reports where the flattened disk's bytes at [off, off+length) are stored verbatim in
// a local file, so that a front end may send them with sendfile(2) instead of copying them
// through a buffer. It answers for a prefix of m > 0 bytes: with f != nil the prefix is bytes
// [fileOff, fileOff+m) of f; with f == nil those bytes must be read with ReadAt (they are
// zeros, compressed, or from a remote source). f belongs to the chain: callers MUST NOT close
// it and MUST NOT use it after Close. length MUST be positive and off+length at most Size.
func (c *Chain) MapFile(ctx context.Context, off, length int64) (f *os.File, fileOff, m int64, err error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, 0, err
	}
	if off < 0 || length <= 0 || off+length > c.size {
		return nil, 0, 0, fmt.Errorf("vmdk: map %d bytes at %d outside size %d: %w", length, off, c.size, vfs.ErrOutOfRange)
	}
	for depth := 0; depth < len(c.links); depth++ {
		l := c.links[depth]
		if off >= l.size {
			break
		}
		ms, err := l.mapRange(ctx, off, length)
		if err != nil {
			return nil, 0, 0, err
		}
		x := ms[0]
		length = min(length, x.End()-off)
		switch x.Kind {
		case vfs.Hole:
			continue // the link below supplies this prefix
		case vfs.Zero:
			return nil, 0, length, nil
		}
		e := &l.extents[l.find(off)]
		length = min(length, e.start+e.n-off)
		fm, ok := e.r.(fileMapper)
		if !ok {
			return nil, 0, length, nil
		}
		f, fo, n, err := fm.mapFile(ctx, off-e.start, length)
		if err != nil {
			return nil, 0, 0, err
		}
		if f == nil || n <= 0 {
			return nil, 0, length, nil
		}
		return f, fo, min(n, length), nil
	}
	return nil, 0, length, nil // past the end of every link: zeros
}
