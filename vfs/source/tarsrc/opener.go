package tarsrc

import (
	"context"
	"fmt"
	"path"
	"strings"
	"sync"

	"github.com/h2kvm/h2kvm/vfs"
)

// Opener opens archive members named by member locations (see Location), reading each archive
// through the Opener of the archive's own location. It keeps one member index per archive
// location, so an archive's headers are walked once. It is safe for concurrent use.
type Opener struct {
	// set once
	under vfs.Opener

	mu  sync.Mutex // guards idx; never held during I/O
	idx map[string]*Index
}

var _ vfs.Opener = (*Opener)(nil)

// NewOpener returns an Opener whose archives are opened by under: the Opener the block layer
// would use for the archive's location on its own (a local file opener, a datastore opener).
func NewOpener(under vfs.Opener) *Opener {
	return &Opener{under: under, idx: make(map[string]*Index)}
}

// Index returns the member index of the archive at location archive, walking its headers the
// first time.
func (o *Opener) Index(ctx context.Context, archive string) (*Index, error) {
	src, ix, err := o.open(ctx, archive)
	if err != nil {
		return nil, err
	}
	src.Close()
	return ix, nil
}

func (o *Opener) open(ctx context.Context, archive string) (vfs.Source, *Index, error) {
	src, err := o.under.Open(ctx, archive)
	if err != nil {
		return nil, nil, fmt.Errorf("tarsrc: open archive: %w", err)
	}
	o.mu.Lock()
	ix := o.idx[archive]
	o.mu.Unlock()
	if ix == nil {
		ix, err = Walk(ctx, src)
		if err != nil {
			src.Close()
			return nil, nil, err
		}
		o.mu.Lock()
		o.idx[archive] = ix
		o.mu.Unlock()
	}
	return src, ix, nil
}

// Open opens the member named by loc. The member's Close closes its archive source.
func (o *Opener) Open(ctx context.Context, loc string) (vfs.Source, error) {
	archive, member, err := Split(loc)
	if err != nil {
		return nil, err
	}
	src, ix, err := o.open(ctx, archive)
	if err != nil {
		return nil, err
	}
	m, ok := ix.Lookup(member)
	if !ok {
		src.Close()
		return nil, fmt.Errorf("tarsrc: %s has no member %q (it has %s): %w", archive, member, strings.Join(ix.Names(), ", "), vfs.ErrNotFound)
	}
	ms := OpenMember(src, m, true)
	ms.name = Location(archive, m.Name)
	return ms, nil
}

// Resolve names the member rel relative to the member base (a VMDK descriptor naming its
// extents or parent). Names that leave the archive (absolute, "..") are refused with
// vfs.ErrChain.
func (o *Opener) Resolve(base, rel string) (string, error) {
	archive, member, err := Split(base)
	if err != nil {
		return "", fmt.Errorf("%w: %w", err, vfs.ErrChain)
	}
	if strings.HasPrefix(rel, "/") || strings.Contains(rel, "\\") || strings.Contains(rel, ":") {
		return "", fmt.Errorf("tarsrc: %q named in %s is not a member of the archive: %w", rel, base, vfs.ErrChain)
	}
	p := path.Join(path.Dir(member), rel)
	if p == ".." || strings.HasPrefix(p, "../") {
		return "", fmt.Errorf("tarsrc: %q named in %s leaves the archive: %w", rel, base, vfs.ErrChain)
	}
	return Location(archive, p), nil
}
