package gfs

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"libguestfs.org/guestfs"
)

// Backend is the libguestfs backend h2kvm always uses: qemu run directly by libguestfs. The
// libvirt backend would need a running libvirtd and cannot reach a unix socket it does not own.
const Backend = "direct"

// Options configure a session.
type Options struct {
	// ForceTCG makes the appliance run under TCG (software emulation). Set it when KVM is
	// unusable (see pipeline/host.CheckKVM): on a broken nested KVM the appliance hangs.
	ForceTCG bool
	// MemoryMiB is the appliance's memory; 0 keeps libguestfs's default (768 MiB in 1.48).
	MemoryMiB int
	// CPUs is the appliance's virtual CPU count; 0 keeps libguestfs's default (1).
	CPUs int
	// Identifier names the handle in libguestfs's debug and trace output.
	Identifier string
	// ExtraSettings are appended to the backend settings (e.g. "force_kvm" never; "gdb" when
	// debugging the appliance).
	ExtraSettings []string
}

// BackendSettings returns the libguestfs backend settings these options select.
func (o Options) BackendSettings() []string {
	var s []string
	if o.ForceTCG {
		s = append(s, "force_tcg")
	}
	return append(s, o.ExtraSettings...)
}

// Drive is one disk given to the appliance.
type Drive struct {
	// Socket is the path of an NBD server's unix socket. If empty, Path is a local file.
	Socket string
	// Export is the NBD export name (used only with Socket; may be empty for the default export).
	Export string
	// Path is a local image file (used only without Socket).
	Path string
	// Format is the image format qemu reads the drive as; "" means "raw". It is always given to
	// libguestfs explicitly: format probing on untrusted images is unsafe.
	Format string
	// ReadOnly drives are protected by a throw-away overlay; the source is never written.
	ReadOnly bool
}

// NBD returns a raw drive served by an NBD server listening on the unix socket at socket.
func NBD(socket, export string, readOnly bool) Drive {
	return Drive{Socket: socket, Export: export, ReadOnly: readOnly}
}

// File returns a drive backed by a local image file in the given format ("" means raw).
func File(path, format string, readOnly bool) Drive {
	return Drive{Path: path, Format: format, ReadOnly: readOnly}
}

// String describes the drive for errors and logs.
func (d Drive) String() string {
	mode := "rw"
	if d.ReadOnly {
		mode = "ro"
	}
	if d.Socket != "" {
		return fmt.Sprintf("nbd+unix:///%s?socket=%s (%s)", d.Export, d.Socket, mode)
	}
	return fmt.Sprintf("%s (%s, %s)", d.Path, d.format(), mode)
}

func (d Drive) format() string {
	if d.Format == "" {
		return "raw"
	}
	return d.Format
}

// add gives the drive to the handle.
func (d Drive) add(g *guestfs.Guestfs) error {
	opt := &guestfs.OptargsAdd_drive{
		Readonly_is_set: true, Readonly: d.ReadOnly,
		Format_is_set: true, Format: d.format(),
	}
	name := d.Path
	if d.Socket != "" {
		if d.Path != "" {
			return fmt.Errorf("drive %s: both an NBD socket and a file path given", d)
		}
		sock, err := filepath.Abs(d.Socket)
		if err != nil {
			return fmt.Errorf("drive %s: %w", d, err)
		}
		// For protocol nbd libguestfs takes the export name as the "filename".
		name = d.Export
		opt.Protocol_is_set, opt.Protocol = true, "nbd"
		opt.Server_is_set, opt.Server = true, []string{"unix:" + sock}
	} else if d.Path == "" {
		return errors.New("drive: neither an NBD socket nor a file path given")
	}
	if err := g.Add_drive(name, opt); err != nil {
		return fmt.Errorf("drive %s: %w", d, err)
	}
	return nil
}

// Session is a launched libguestfs appliance with its drives attached.
type Session struct {
	g      *guestfs.Guestfs
	drives []Drive
}

// Open creates, configures and launches a libguestfs handle with the given drives, in order.
// The caller MUST Close the session.
func Open(ctx context.Context, opts Options, drives ...Drive) (*Session, error) {
	if len(drives) == 0 {
		return nil, errors.New("gfs: open: no drives")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	g, err := guestfs.Create()
	if err != nil {
		return nil, fmt.Errorf("gfs: create handle: %w", err)
	}
	if err := configure(g, opts, drives); err != nil {
		closeHandle(g)
		return nil, fmt.Errorf("gfs: %w", err)
	}

	launched := make(chan error, 1)
	go func() { launched <- g.Launch() }()
	select {
	case err := <-launched:
		if err != nil {
			closeHandle(g)
			return nil, fmt.Errorf("gfs: launch appliance (backend %s, settings %v): %w", Backend, opts.BackendSettings(), err)
		}
	case <-ctx.Done():
		go func() {
			<-launched
			g.Shutdown()
			closeHandle(g)
		}()
		return nil, ctx.Err()
	}
	return &Session{g: g, drives: drives}, nil
}

func configure(g *guestfs.Guestfs, opts Options, drives []Drive) error {
	if err := g.Set_backend(Backend); err != nil {
		return fmt.Errorf("set backend %s: %w", Backend, err)
	}
	if err := g.Set_backend_settings(opts.BackendSettings()); err != nil {
		return fmt.Errorf("set backend settings %v: %w", opts.BackendSettings(), err)
	}
	if opts.Identifier != "" {
		if err := g.Set_identifier(opts.Identifier); err != nil {
			return fmt.Errorf("set identifier: %w", err)
		}
	}
	if opts.MemoryMiB > 0 {
		if err := g.Set_memsize(opts.MemoryMiB); err != nil {
			return fmt.Errorf("set memory %d MiB: %w", opts.MemoryMiB, err)
		}
	}
	if opts.CPUs > 0 {
		if err := g.Set_smp(opts.CPUs); err != nil {
			return fmt.Errorf("set cpus %d: %w", opts.CPUs, err)
		}
	}
	for _, d := range drives {
		if err := d.add(g); err != nil {
			return err
		}
	}
	return nil
}

// closeHandle frees a handle. guestfs.Close returns a *GuestfsError, which must not be turned
// into a non-nil error interface when it is nil.
func closeHandle(g *guestfs.Guestfs) error {
	if e := g.Close(); e != nil {
		return e
	}
	return nil
}

// G returns the libguestfs handle for fixers to call. It is valid until Close.
func (s *Session) G() *guestfs.Guestfs { return s.g }

// Drives returns the drives in the order they were added (index i is the appliance's i-th disk).
func (s *Session) Drives() []Drive { return s.drives }

// Close shuts the appliance down, which flushes writes to read-write drives, and frees the handle.
// An error from the shutdown means writes may be lost. Close is idempotent.
func (s *Session) Close() error {
	if s == nil || s.g == nil {
		return nil
	}
	g := s.g
	s.g = nil
	var errs []error
	if err := g.Shutdown(); err != nil {
		errs = append(errs, fmt.Errorf("gfs: shutdown appliance: %w", err))
	}
	if err := closeHandle(g); err != nil {
		errs = append(errs, fmt.Errorf("gfs: close handle: %w", err))
	}
	return errors.Join(errs...)
}
