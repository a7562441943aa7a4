package libvirt

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/h2kvm/h2kvm/pipeline/machine"
	"github.com/h2kvm/h2kvm/pipeline/target"
)

// Target is the libvirt output target: it writes OUTPUT/NAME.xml, a libvirt domain of the
// converted disks (see Domain), checks it with virt-xml-validate and boot-tests it under
// libvirtd (see BootTest). It has no state; the zero value is ready.
type Target struct{}

var (
	_ target.Target     = (*Target)(nil)
	_ target.BootTester = (*Target)(nil)
)

// New returns the libvirt target.
func New() *Target { return &Target{} }

// Name is "libvirt".
func (*Target) Name() string { return "libvirt" }

// vm is in.VM with the name and firmware of the input.
func vm(in target.Input) machine.VM {
	v := in.VM
	v.Name = in.Name
	if in.Firmware != "" {
		v.Firmware = in.Firmware
	}
	return v
}

func domainType(in target.Input) string {
	if in.KVM {
		return "kvm"
	}
	return "qemu"
}

// Write writes the domain to in.OutputDir/in.Name.xml, its disks at in.Disks; a UEFI guest's
// variable store is to be kept beside the first disk as NAME_VARS.fd.
func (t *Target) Write(ctx context.Context, in target.Input) (target.Result, error) {
	if in.Name == "" {
		return target.Result{}, fmt.Errorf("libvirt: no domain name")
	}
	if len(in.Disks) == 0 {
		return target.Result{}, fmt.Errorf("libvirt: domain %s: no disks", in.Name)
	}
	dom, err := Domain(vm(in), DomainOptions{
		Type: domainType(in), DiskPaths: in.Disks, DiskFormat: in.Format,
		NVRAMPath: filepath.Join(filepath.Dir(in.Disks[0]), in.Name+"_VARS.fd"),
	})
	if err != nil {
		return target.Result{}, fmt.Errorf("libvirt: %w", err)
	}
	xmlPath := filepath.Join(in.OutputDir, in.Name+".xml")
	if err := WriteDomainXML(dom, xmlPath); err != nil {
		return target.Result{}, fmt.Errorf("libvirt: %w", err)
	}
	return target.Result{Target: t.Name(), Definition: xmlPath, Files: []string{xmlPath}}, nil
}

// Validate checks res.Definition against libvirt's domain schema (ValidateDomainXML).
func (t *Target) Validate(ctx context.Context, res target.Result) error {
	if res.Target != t.Name() {
		return fmt.Errorf("libvirt: cannot validate a definition of target %q", res.Target)
	}
	return ValidateDomainXML(ctx, res.Definition)
}

// BootTest runs BootTest on the input's disks: a transient copy of the domain on overlays.
func (t *Target) BootTest(ctx context.Context, in target.Input, res target.Result, opt target.BootOptions) (target.BootResult, error) {
	return BootTest(ctx, BootTestOptions{
		VM: vm(in), Disks: in.Disks, Format: in.Format, DomainType: domainType(in),
		WorkDir: opt.WorkDir, Timeout: opt.Timeout,
	})
}
