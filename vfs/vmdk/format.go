package vmdk

import (
	"bytes"
	"context"
	"fmt"

	"github.com/h2kvm/h2kvm/vfs"
)

// FormatName is the name of the VMDK format: Format.Name and ChainInfo.Format.
const FormatName = "vmdk"

// Format is VMDK as a vfs.Format: it recognises every file Open accepts as the top of a chain
// (a KDMV sparse file, a bare COWD or seSparse extent, a text descriptor) and opens it with Open.
type Format struct{}

var _ vfs.Format = Format{}

// Name returns FormatName.
func (Format) Name() string { return FormatName }

// Detect reports whether src starts with the KDMV, COWD or seSparse magic, or is small enough
// to be a text descriptor and starts like one ("# Disk DescriptorFile", version=N). It reads at
// most one sector.
func (Format) Detect(ctx context.Context, src vfs.Source) (bool, error) {
	head := make([]byte, min(src.Size(), sectorSize))
	if err := vfs.ReadFull(ctx, src, head, 0); err != nil {
		return false, fmt.Errorf("vmdk: %w", err)
	}
	switch {
	case bytes.HasPrefix(head, kdmvMagic), bytes.HasPrefix(head, cowdMagic), bytes.HasPrefix(head, sesparseMagic):
		return true, nil
	}
	return src.Size() <= MaxDescriptorSize && looksLikeDescriptor(head), nil
}

// Open opens the chain at name with Open; opt.IgnoreCIDMismatch and opt.MaxLinks map to
// Options. The Disk is a *Chain.
func (Format) Open(ctx context.Context, o vfs.Opener, name string, opt vfs.OpenOptions) (vfs.Disk, error) {
	c, err := Open(ctx, o, name, Options{IgnoreCIDMismatch: opt.IgnoreCIDMismatch, MaxLinks: opt.MaxLinks})
	if err != nil {
		return nil, err
	}
	return c, nil
}
