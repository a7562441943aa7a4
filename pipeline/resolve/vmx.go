package resolve

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/h2kvm/h2kvm/pipeline/machine"
	"github.com/h2kvm/h2kvm/pipeline/resolve/vmx"
	"github.com/h2kvm/h2kvm/vfs"
)

func resolveVMX(ctx context.Context, loc string, opt *Options) (*machine.VM, error) {
	o := opt.opener()
	src, err := o.Open(ctx, loc)
	if err != nil {
		return nil, fmt.Errorf("resolve: %w", err)
	}
	defer src.Close()
	if src.Size() > vmx.MaxSize {
		return nil, fmt.Errorf("resolve: %s is %d bytes, too large for a .vmx: %w", loc, src.Size(), vmx.ErrInvalid)
	}
	b := make([]byte, src.Size())
	if err := vfs.ReadFull(ctx, src, b, 0); err != nil {
		return nil, fmt.Errorf("resolve: %w", err)
	}
	f, err := vmx.Parse(strings.NewReader(string(b)), loc)
	if err != nil {
		return nil, fmt.Errorf("resolve: %w", err)
	}
	h, err := f.Hardware()
	if err != nil {
		return nil, fmt.Errorf("resolve: %w", err)
	}
	for _, w := range h.Warnings {
		opt.warnf("%s: %s", loc, w)
	}
	vm := &machine.VM{
		Name: h.Name, CPUs: h.CPUs, CoresPerSocket: h.CoresPerSocket, MemoryMiB: h.MemoryMiB,
		Firmware: h.Firmware, SecureBoot: h.SecureBoot, Disks: []machine.Disk{},
	}
	if vm.Name == "" {
		vm.Name = diskName(loc)
	}
	for _, n := range h.NICs {
		vm.NICs = append(vm.NICs, machine.NIC{Model: n.Model, MAC: n.MAC, Network: n.Network})
	}
	for _, d := range h.Disks {
		dl, err := diskLocation(ctx, o, loc, d.FileName, opt)
		if err != nil {
			return nil, fmt.Errorf("resolve: %s: %s%s: %w", loc, d.Controller, d.UnitString(), err)
		}
		vm.Disks = append(vm.Disks, machine.Disk{Source: dl, Controller: d.Controller, Unit: d.UnitString()})
	}
	if len(vm.Disks) == 0 {
		return nil, fmt.Errorf("resolve: %s names no virtual disk: %w", loc, vmx.ErrInvalid)
	}
	return vm, nil
}

// diskLocation resolves a fileName of a .vmx. Names that resolve inside the .vmx's folder (see
// confined) are used when they exist; an absolute name that does not exist or leads out of the
// folder (ESXi's /vmfs/volumes/…, another host's paths) falls back, with a warning, to the file
// of the same base name in the .vmx's folder, as a copied VM folder holds it there. A relative
// name that leads out is refused with ErrOutside unless Options.AllowOutsideDisks.
func diskLocation(ctx context.Context, o vfs.Opener, vmxLoc, name string, opt *Options) (string, error) {
	loc, err := o.Resolve(vmxLoc, name)
	if err == nil && !opt.AllowOutsideDisks && !confined(vmxLoc, loc) {
		err = fmt.Errorf("%s (%s): %w", name, loc, ErrOutside)
	}
	if err == nil {
		if s, oerr := o.Open(ctx, loc); oerr == nil {
			s.Close()
			return loc, nil
		} else if !errors.Is(oerr, vfs.ErrNotFound) {
			return "", oerr
		} else if !isAbs(name) {
			return "", oerr
		}
	} else if !isAbs(name) {
		return "", err
	}
	base := name[strings.LastIndexAny(name, `/\`)+1:]
	alt, err2 := o.Resolve(vmxLoc, base)
	if err2 == nil && !opt.AllowOutsideDisks && !confined(vmxLoc, alt) {
		err2 = fmt.Errorf("%s (%s): %w", base, alt, ErrOutside)
	}
	if err2 != nil {
		return "", err2
	}
	s, err2 := o.Open(ctx, alt)
	if err2 != nil {
		if errors.Is(err, ErrOutside) {
			return "", fmt.Errorf("%w; nor is %s there: %v", err, alt, err2)
		}
		return "", fmt.Errorf("%s is not there, nor %s: %w", name, alt, err2)
	}
	s.Close()
	if errors.Is(err, ErrOutside) {
		opt.warnf("%s: disk %s is outside the VM's folder; using %s", vmxLoc, name, alt)
	} else {
		opt.warnf("%s: disk %s not found as written; using %s", vmxLoc, name, alt)
	}
	return alt, nil
}

func isAbs(name string) bool {
	return path.IsAbs(name) || strings.HasPrefix(name, `\`) || len(name) >= 2 && name[1] == ':'
}
