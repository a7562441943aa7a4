package migrate

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"

	"github.com/h2kvm/h2kvm/pipeline/machine"
	"github.com/h2kvm/h2kvm/pipeline/resolve"
	"github.com/h2kvm/h2kvm/pipeline/resolve/vsphere"
	"github.com/h2kvm/h2kvm/vfs"
	"github.com/h2kvm/h2kvm/vfs/source"
	"github.com/h2kvm/h2kvm/vfs/source/tarsrc"
	"github.com/h2kvm/h2kvm/vfs/source/vsession"
)

// ResolveOptions are the choices of ResolveVM.
type ResolveOptions struct {
	// Snapshot chooses a vSphere snapshot (name, path or MoRef).
	Snapshot string
	// VerifyDisks reads every OVA/OVF disk once completely to check it against the manifest.
	VerifyDisks bool
	// NoVerifyDisks leaves OVA/OVF disk digests unchecked (with a warning); by default they
	// come back in machine.Disk.Manifest, to be checked once the disk has been read.
	NoVerifyDisks bool
	// Sessions, when set, keeps the vSphere login of a vsphere:// source for the disk reads
	// (see source.Config.VSphereSessions); the caller logs it out.
	Sessions *vsession.Shelf
	// Warn (may be nil) receives warnings, e.g. a running VM read without a snapshot.
	Warn func(string)
}

// ResolveVM resolves a SOURCE (vsphere://, .ova, .ovf, .vmx, or a plain disk) into its VM
// description. Remote .ova/.ovf/.vmx files are read through the source opener of their
// location.
func ResolveVM(ctx context.Context, loc string, cfg source.Config, ro ResolveOptions) (*machine.VM, error) {
	warn := ro.Warn
	if warn == nil {
		warn = func(string) {}
	}
	opt := resolve.Options{
		// The password comes from cfg: the command line takes it out of the environment
		// (source.HideSecrets), where vsphere would otherwise look for it.
		VSphere:           vsphere.Options{TLS: cfg.TLS, Password: string(cfg.VSpherePassword), Snapshot: ro.Snapshot, Sessions: ro.Sessions, Warn: warn},
		Warn:              warn,
		VerifyDisks:       ro.VerifyDisks,
		NoVerifyDisks:     ro.NoVerifyDisks,
		AllowOutsideDisks: cfg.AllowOutsideDisks,
	}
	if k := resolve.KindOf(loc); k != resolve.KindVSphere && k != resolve.KindDisk && strings.Contains(loc, "://") {
		o, _, err := source.Open(ctx, loc, cfg)
		if err != nil {
			return nil, err
		}
		defer o.Close()
		opt.Opener = o
	}
	vm, err := resolve.Resolve(ctx, loc, opt)
	if err != nil {
		return nil, err
	}
	// A relative local path is relative to this process's folder, not to a daemon's
	// (--server): make the ones that name existing files absolute.
	for i, d := range vm.Disks {
		if strings.Contains(d.Source, "://") || filepath.IsAbs(d.Source) {
			continue
		}
		if _, err := os.Stat(d.Source); err == nil {
			if a, err := filepath.Abs(d.Source); err == nil {
				vm.Disks[i].Source = a
			}
		}
	}
	return vm, nil
}

func isNotFound(err error) bool { return errors.Is(err, vfs.ErrNotFound) }

// MemberManifest returns the manifest digest of an OVA member location ("ova:ARCHIVE#MEMBER"),
// or nil when loc is not one or no manifest lists it. Remote archives are read through the
// source opener of their location.
func MemberManifest(ctx context.Context, loc string, cfg source.Config) (*machine.ManifestDigest, error) {
	if !tarsrc.IsLocation(loc) {
		return nil, nil
	}
	archive, _, err := tarsrc.Split(loc)
	if err != nil {
		return nil, err
	}
	var opt resolve.Options
	if strings.Contains(archive, "://") {
		o, _, err := source.Open(ctx, archive, cfg)
		if err != nil {
			return nil, err
		}
		defer o.Close()
		opt.Opener = o
	}
	return resolve.MemberManifest(ctx, loc, opt)
}
