package resolve

import (
	"context"
	"fmt"
	"net/url"
	"path"
	"path/filepath"
	"strings"

	"github.com/h2kvm/h2kvm/pipeline/machine"
	"github.com/h2kvm/h2kvm/pipeline/resolve/vsphere"
	"github.com/h2kvm/h2kvm/vfs"
	"github.com/h2kvm/h2kvm/vfs/source/tarsrc"
)

// Options tune Resolve.
type Options struct {
	// Opener reads .ova, .ovf and .vmx files and resolves the names they hold. Nil means
	// vfs.LocalOpener{}: local files only.
	Opener vfs.Opener
	// VSphere holds the vSphere credentials, TLS policy and snapshot choice for vsphere://
	// sources.
	VSphere vsphere.Options
	// VerifyDisks reads every OVA/OVF disk the manifest lists completely and checks its
	// digest before returning.
	VerifyDisks bool
	// NoVerifyDisks leaves disk digests unchecked (with a warning). Without it, and without
	// VerifyDisks, each listed disk's digest is recorded in machine.Disk.Manifest for the
	// migration to check once it has read the disk.
	NoVerifyDisks bool
	// AllowOutsideDisks lets a .vmx or an OVF name disks outside its folder (a local .vmx's
	// absolute fileNames, symbolic links that lead out of the folder; for a remote one, files
	// outside its datastore or URL folder). Without it they are refused with ErrOutside, as a
	// crafted VM folder could otherwise have any host file migrated. (An absolute fileName
	// outside the folder still falls back to the file of the same base name inside it.)
	AllowOutsideDisks bool
	// Warn receives warnings; nil drops them.
	Warn func(msg string)
}

func (o *Options) warnf(format string, args ...any) {
	if o.Warn != nil {
		o.Warn(fmt.Sprintf(format, args...))
	}
}

func (o *Options) opener() vfs.Opener {
	if o.Opener == nil {
		return vfs.LocalOpener{}
	}
	return o.Opener
}

// Kind names what a SOURCE location is.
type Kind string

const (
	KindVSphere Kind = "vsphere"
	KindOVA     Kind = "ova"
	KindOVF     Kind = "ovf"
	KindVMX     Kind = "vmx"
	KindDisk    Kind = "disk"
)

// KindOf tells how Resolve will read location.
func KindOf(location string) Kind {
	if strings.HasPrefix(location, "vsphere://") {
		return KindVSphere
	}
	if tarsrc.IsLocation(location) {
		return KindDisk // a member of an archive, named by the user
	}
	switch strings.ToLower(path.Ext(locationPath(location))) {
	case ".ova":
		return KindOVA
	case ".ovf":
		return KindOVF
	case ".vmx":
		return KindVMX
	}
	return KindDisk
}

// locationPath returns the path part of a URL location, or the location itself.
func locationPath(loc string) string {
	if strings.Contains(loc, "://") {
		if u, err := url.Parse(loc); err == nil {
			return u.Path
		}
	}
	return loc
}

// Resolve describes the VM at location. See the package doc for the kinds of SOURCE.
func Resolve(ctx context.Context, location string, opt Options) (*machine.VM, error) {
	if location == "" {
		return nil, fmt.Errorf("resolve: empty SOURCE")
	}
	switch KindOf(location) {
	case KindVSphere:
		vo := opt.VSphere
		if vo.Warn == nil {
			vo.Warn = opt.Warn
		}
		vm, err := vsphere.Resolve(ctx, location, vo)
		if err != nil {
			return nil, fmt.Errorf("resolve: %w", err)
		}
		return vm, nil
	case KindOVA:
		return resolveOVA(ctx, localAbs(location), &opt)
	case KindOVF:
		return resolveOVF(ctx, localAbs(location), &opt)
	case KindVMX:
		return resolveVMX(ctx, localAbs(location), &opt)
	}
	return &machine.VM{
		Name:  diskName(location),
		Disks: []machine.Disk{{Source: location}},
	}, nil
}

// localAbs makes a local path absolute so that locations derived from it stay valid whatever
// the working directory of the process that opens them.
func localAbs(loc string) string {
	if strings.Contains(loc, "://") || filepath.IsAbs(loc) {
		return loc
	}
	if a, err := filepath.Abs(loc); err == nil {
		return a
	}
	return loc
}

// diskName derives a VM name from a disk location: its base name without extension.
func diskName(loc string) string {
	b := path.Base(locationPath(loc))
	if e := path.Ext(b); e != "" && e != b {
		b = strings.TrimSuffix(b, e)
	}
	if b == "" || b == "." || b == "/" {
		return "vm"
	}
	return b
}
