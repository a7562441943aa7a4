package vfs

import (
	"context"
	"fmt"
	"strings"
	"sync"
)

// Format is one disk image format (VMDK, ...) that OpenDisk can recognise and open. The list of
// formats a program knows is explicit: it is passed to OpenDisk (see package vfs/diskfmt/all
// for the registry), never collected by init functions.
type Format interface {
	// Name is the short lower-case name of the format ("vmdk"); it is ChainInfo.Format.
	Name() string
	// Detect reports whether src, the file the user named, is in this format. It sniffs the
	// first bytes (magic numbers, a text header) and MUST NOT keep src or read much of it. An
	// error means src could not be read, not that the bytes are foreign.
	Detect(ctx context.Context, src Source) (bool, error)
	// Open opens the disk at name and every file it refers to (extents, parents), all through
	// o. Errors wrap the vfs sentinels and name the file concerned.
	Open(ctx context.Context, o Opener, name string, opt OpenOptions) (Disk, error)
}

// OpenOptions tune Format.Open. Options a format does not have are ignored by it.
type OpenOptions struct {
	// IgnoreCIDMismatch opens a chain whose child records a parent content ID that does not
	// match the parent's (the parent changed after the snapshot); the mismatch is then only a
	// warning in ChainInfo.
	IgnoreCIDMismatch bool
	// MaxLinks bounds the chain length; 0 means the format's default.
	MaxLinks int
}

// Disk is an opened disk image, possibly a chain of snapshot links, as one read-only device.
// Close releases every file the disk opened. Implementations MAY also implement optional
// interfaces of the device stack (MapFile, see vfs/overlay); callers keep the Disk itself, not a
// wrapper, so those stay visible.
type Disk interface {
	Device
	// Info describes the disk and its links for `h2kvm info` and the control API. It may read
	// every allocation table, so it can cost one read per table on a remote disk.
	Info(ctx context.Context) (ChainInfo, error)
	Close() error
}

// OpenDisk opens the disk at name with the first of formats whose Detect accepts the file.
// The file is opened once, through o: the Source given to Detect is handed to the chosen
// format's first Open of name.
//
// Errors: a file none of formats recognises wraps ErrUnknownFormat (and ErrUnsupported) and
// names the file and the formats tried; otherwise errors are those of o.Open, Detect and
// Format.Open.
func OpenDisk(ctx context.Context, formats []Format, o Opener, name string, opt OpenOptions) (Disk, error) {
	src, err := o.Open(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("open disk: %w", err)
	}
	var f Format
	for _, c := range formats {
		ok, err := c.Detect(ctx, src)
		if err != nil {
			src.Close()
			return nil, fmt.Errorf("open disk: %s: detect %s: %w", name, c.Name(), err)
		}
		if ok {
			f = c
			break
		}
	}
	if f == nil {
		src.Close()
		names := make([]string, len(formats))
		for i, c := range formats {
			names[i] = c.Name()
		}
		return nil, fmt.Errorf("open disk: %s: %w (%w; known formats: %s)", name, ErrUnknownFormat, ErrUnsupported, strings.Join(names, ", "))
	}
	ro := &reuseOpener{Opener: o, name: name, src: src}
	d, err := f.Open(ctx, ro, name, opt)
	ro.release()
	if err != nil {
		return nil, err
	}
	return d, nil
}

// reuseOpener hands the Source OpenDisk sniffed to the first Open of the same name, so a remote
// file is not opened (or cached) twice.
type reuseOpener struct {
	Opener
	name string
	mu   sync.Mutex
	src  Source // nil once taken or released
}

func (o *reuseOpener) Open(ctx context.Context, name string) (Source, error) {
	o.mu.Lock()
	if name == o.name && o.src != nil {
		src := o.src
		o.src = nil
		o.mu.Unlock()
		return src, nil
	}
	o.mu.Unlock()
	return o.Opener.Open(ctx, name)
}

// release closes the sniffed Source if the format did not take it.
func (o *reuseOpener) release() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.src != nil {
		o.src.Close()
		o.src = nil
	}
}
