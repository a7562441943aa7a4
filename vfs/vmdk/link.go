package vmdk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/h2kvm/h2kvm/vfs"
)

// link is one element of a chain: a descriptor and the extents it lists, concatenated.
type link struct {
	// set once at open
	name     string      // location as resolved by the Opener
	desc     *Descriptor // nil for a bare binary extent without an embedded descriptor
	embedded bool        // desc came from inside a KDMV file
	extents  []linkExtent
	size     int64
}

type linkExtent struct {
	start    int64 // byte offset in the link
	n        int64 // bytes, from the descriptor line
	line     ExtentLine
	file     string // resolved location; "" for ZERO / NOACCESS
	fileSize int64
	r        extentReader
}

var (
	cowdMagic     = []byte("COWD")
	sesparseMagic = []byte{0xbe, 0xba, 0xfe, 0xca, 0, 0, 0, 0}
)

// openLink opens the file at name as one link: a text descriptor and its extents, a KDMV file
// (with its embedded descriptor, if any), or a bare COWD or seSparse extent.
func openLink(ctx context.Context, o vfs.Opener, name string, b *metaBudget) (*link, error) {
	src, err := o.Open(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("vmdk: %w", err)
	}
	l, err := openLinkSource(ctx, o, name, src, b)
	if err != nil {
		src.Close()
		return nil, err
	}
	return l, nil
}

// openLinkSource opens a link from src; on success src is owned by the link (or closed).
func openLinkSource(ctx context.Context, o vfs.Opener, name string, src vfs.Source, b *metaBudget) (*link, error) {
	head := make([]byte, min(src.Size(), sectorSize))
	if err := vfs.ReadFull(ctx, src, head, 0); err != nil {
		return nil, fmt.Errorf("vmdk: %w", err)
	}
	l := &link{name: name}
	switch {
	case bytes.HasPrefix(head, kdmvMagic):
		sp, err := openSparse(ctx, src, -1, b)
		if err != nil {
			return nil, err
		}
		if sp.h.descriptorOffset != 0 {
			text := make([]byte, sp.h.descriptorSize*sectorSize)
			if err := vfs.ReadFull(ctx, src, text, int64(sp.h.descriptorOffset)*sectorSize); err != nil {
				return nil, fmt.Errorf("vmdk: embedded descriptor: %w", err)
			}
			if l.desc, err = ParseDescriptor(text); err != nil {
				return nil, fmt.Errorf("vmdk: %s: embedded descriptor at sector %d: %w", name, sp.h.descriptorOffset, err)
			}
			l.embedded = true
		}
		if sp.h.capacity == 0 && l.desc != nil && len(l.desc.Extents) > 0 {
			// A descriptor container (qemu's special case): the extents are those its
			// embedded descriptor lists.
			if err := l.openExtents(ctx, o, b); err != nil {
				return nil, err
			}
			src.Close()
			return l, nil
		}
		// The file itself is the only extent; the embedded descriptor's extent line is not
		// followed (VMware writes names there that need not match the file's).
		acc := AccessRW
		if l.desc != nil && len(l.desc.Extents) == 1 {
			acc = l.desc.Extents[0].Access
		}
		line := ExtentLine{Access: acc, Sectors: int64(sp.h.capacity), Type: "SPARSE", File: name}
		l.extents = []linkExtent{{n: sp.size(), line: line, file: name, fileSize: src.Size(), r: sp}}
	case bytes.HasPrefix(head, cowdMagic), bytes.HasPrefix(head, sesparseMagic):
		typ, open := "VMFSSPARSE", openCOWDExtent
		if bytes.HasPrefix(head, sesparseMagic) {
			typ, open = "SESPARSE", openSESparseExtent
		}
		r, err := open(ctx, src, -1, b)
		if err != nil {
			return nil, err
		}
		line := ExtentLine{Access: AccessRW, Sectors: r.size() / sectorSize, Type: typ, File: name}
		l.extents = []linkExtent{{n: r.size(), line: line, file: name, fileSize: src.Size(), r: r}}
	default:
		if src.Size() > MaxDescriptorSize || !looksLikeDescriptor(head) {
			return nil, fmt.Errorf("vmdk: %s: neither a descriptor (first line is not version=1|2|3) nor a sparse extent (magic %q); a flat extent is opened through its descriptor: %w",
				name, head[:min(len(head), 4)], vfs.ErrCorrupt)
		}
		text := make([]byte, src.Size())
		if err := vfs.ReadFull(ctx, src, text, 0); err != nil {
			return nil, fmt.Errorf("vmdk: %w", err)
		}
		var err error
		if l.desc, err = ParseDescriptor(text); err != nil {
			return nil, fmt.Errorf("vmdk: %s: %w", name, err)
		}
		if len(l.desc.Extents) == 0 {
			return nil, fmt.Errorf("vmdk: %s: descriptor lists no extents: %w", name, vfs.ErrCorrupt)
		}
		if err := l.openExtents(ctx, o, b); err != nil {
			return nil, err
		}
		src.Close()
		return l, nil
	}
	l.size = l.extents[0].n
	return l, nil
}

// openExtents opens every extent the descriptor lists, relative to the link's file.
func (l *link) openExtents(ctx context.Context, o vfs.Opener, b *metaBudget) error {
	var start int64
	for i, line := range l.desc.Extents {
		e, err := openExtent(ctx, o, l.name, line, b)
		if err != nil {
			l.close()
			return fmt.Errorf("vmdk: %s: extent %d (%s %q): %w", l.name, i, line.Type, line.File, err)
		}
		e.start = start
		start += e.n
		l.extents = append(l.extents, e)
	}
	l.size = start
	return nil
}

func openExtent(ctx context.Context, o vfs.Opener, base string, line ExtentLine, b *metaBudget) (linkExtent, error) {
	e := linkExtent{n: line.Sectors * sectorSize, line: line}
	if line.Type == "ZERO" || line.Access == AccessNOACCESS {
		// NOACCESS: the extent may not be read; it reads as zeros and hides its parent.
		e.r = zeroExtent{n: e.n}
		return e, nil
	}
	file, err := o.Resolve(base, line.File)
	if err != nil {
		return e, err
	}
	src, err := o.Open(ctx, file)
	if err != nil {
		if (line.Type == "VMFSRDM" || line.Type == "VMFSRAW") && errors.Is(err, vfs.ErrNotFound) {
			return e, fmt.Errorf("device-backed extent %s cannot be read offline: %w", file, vfs.ErrUnsupported)
		}
		return e, err
	}
	e.file, e.fileSize = file, src.Size()
	r, err := openExtentReader(ctx, src, line, b)
	if err != nil {
		src.Close()
		return e, err
	}
	if r.size() < e.n {
		r.close()
		return e, fmt.Errorf("%s holds %d bytes but the descriptor says %d sectors (%d bytes): %w",
			file, r.size(), line.Sectors, e.n, vfs.ErrCorrupt)
	}
	e.r = r
	return e, nil
}

// openExtentReader opens the extent a descriptor line names. A sparse extent reads only the
// metadata that covers the line's size: its header may declare more, never less.
func openExtentReader(ctx context.Context, src vfs.Source, line ExtentLine, b *metaBudget) (extentReader, error) {
	need := line.Sectors * sectorSize
	switch line.Type {
	case "FLAT", "VMFS", "VMFSRDM", "VMFSRAW":
		return openFlat(src, line.Offset, line.Sectors)
	case "SESPARSE":
		return openSESparseExtent(ctx, src, need, b)
	}
	// SPARSE and VMFSSPARSE: qemu accepts either binary format under either name.
	magic := make([]byte, 4)
	if err := vfs.ReadFull(ctx, src, magic, 0); err != nil {
		return nil, err
	}
	switch {
	case bytes.Equal(magic, kdmvMagic):
		return openSparse(ctx, src, need, b)
	case bytes.Equal(magic, cowdMagic):
		return openCOWDExtent(ctx, src, need, b)
	}
	return nil, fmt.Errorf("%s: magic %q is neither KDMV nor COWD: %w", src.Name(), magic, vfs.ErrCorrupt)
}

func (l *link) close() error {
	var first error
	for _, e := range l.extents {
		if e.r == nil {
			continue
		}
		if err := e.r.close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// find returns the index of the extent holding link byte off (off < l.size).
func (l *link) find(off int64) int {
	return sort.Search(len(l.extents), func(i int) bool { return l.extents[i].start+l.extents[i].n > off })
}

// mapRange maps [off, off+length) of the link (clipped to its size), possibly only a prefix.
func (l *link) mapRange(ctx context.Context, off, length int64) ([]vfs.Extent, error) {
	end := min(off+length, l.size)
	var out []vfs.Extent
	for pos := off; pos < end && len(out) < 4096; {
		i := l.find(pos)
		e := &l.extents[i]
		rel := pos - e.start
		n := min(end, e.start+e.n) - pos
		m, err := e.r.mapRange(ctx, rel, n)
		if err != nil {
			return nil, err
		}
		if len(m) == 0 {
			return nil, fmt.Errorf("vmdk: %s: extent %d mapped nothing at %d", l.name, i, rel)
		}
		for _, x := range m {
			if x.Len <= 0 || x.Off != rel {
				return nil, fmt.Errorf("vmdk: %s: extent %d returned a bad map entry %+v at %d", l.name, i, x, rel)
			}
			rel = x.End()
			x.Off += e.start
			if k := len(out); k > 0 && out[k-1].Kind == x.Kind && out[k-1].End() == x.Off {
				out[k-1].Len += x.Len
			} else {
				out = append(out, x)
			}
			pos = x.End()
		}
	}
	return out, nil
}

// readAt reads [off, off+len(p)) of the link, which lies within its size.
func (l *link) readAt(ctx context.Context, p []byte, off int64) error {
	for len(p) > 0 {
		i := l.find(off)
		e := &l.extents[i]
		n := min(int64(len(p)), e.start+e.n-off)
		if err := e.r.readAt(ctx, p[:n], off-e.start); err != nil {
			return err
		}
		p, off = p[n:], off+n
	}
	return nil
}
