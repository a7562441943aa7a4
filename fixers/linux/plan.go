package linux

import (
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/h2kvm/h2kvm/fixers/linux/conf"
)

// Fix IDs, in the order Apply runs them.
const (
	FixFstab          = "fstab-stable-names"
	FixCrypttab       = "crypttab-stable-names"
	FixNetwork        = "network-virtio-nic"
	FixVMwareModules  = "vmware-modules-unload"
	FixVMwareTools    = "vmware-tools-remove"
	FixInitramfs      = "initramfs-virtio"
	FixGrubDefault    = "grub-stable-root"
	FixGrubConsole    = "grub-serial-console"
	FixDeviceMap      = "grub-device-map-remove"
	FixBootEntries    = "boot-entries-stable-root"
	FixGrubRegenerate = "grub-regenerate"
	FixSELinux        = "selinux-relabel"
)

// VirtioDriver is the driver name of the KVM NIC, as udev, netplan and systemd match it.
const VirtioDriver = "virtio_net"

// LinkFile is the .link file h2kvm creates to keep a NIC name that nothing pinned.
const LinkFile = "/etc/systemd/network/10-h2kvm-virtio.link"

// note is appended to every line the fixers comment out.
const note = "h2kvm: VMware-specific, disabled for KVM"

// PlanOptions tune what Plan proposes.
type PlanOptions struct {
	// KeepMACs are MAC addresses the KVM domain keeps from the source VM. Configuration that
	// pins a kept MAC stays; every other MAC pinning is turned into a match on the virtio
	// driver.
	KeepMACs []string `json:"keep_macs,omitempty"`
	// NoSerialConsole: do not add console=ttyS0 to the kernel command line.
	NoSerialConsole bool `json:"no_serial_console,omitempty"`
}

func (o PlanOptions) keep() func(mac string) bool {
	set := map[string]bool{}
	for _, m := range o.KeepMACs {
		set[conf.NormalizeMAC(m)] = true
	}
	return func(mac string) bool {
		n := conf.NormalizeMAC(mac)
		return n != "" && set[n]
	}
}

// Fix is one planned change.
type Fix struct {
	ID     string   `json:"id"`
	Reason string   `json:"reason"`
	Files  []string `json:"files"`
}

// FixPlan is the ordered list of fixes for a guest. It holds the facts it was made from; Apply
// needs them (device mapping, mounts).
type FixPlan struct {
	Facts    *Facts      `json:"-"`
	Options  PlanOptions `json:"options"`
	Fixes    []Fix       `json:"fixes"`
	Warnings []string    `json:"warnings,omitempty"`
	// Kernels are the kernel versions that boot on virtio (the ones whose initramfs is rebuilt).
	Kernels []string `json:"kernels"`
}

// Has reports whether the plan contains the fix id.
func (p *FixPlan) Has(id string) bool {
	for _, f := range p.Fixes {
		if f.ID == id {
			return true
		}
	}
	return false
}

func (p *FixPlan) add(id, reason string, files ...string) {
	p.Fixes = append(p.Fixes, Fix{ID: id, Reason: reason, Files: files})
}

func (p *FixPlan) warnf(format string, args ...any) {
	p.Warnings = append(p.Warnings, fmt.Sprintf(format, args...))
}

// Plan decides the fixes a guest needs from its facts alone; it changes nothing. It refuses,
// with ErrNoOS, ErrUnsupported or ErrNotBootable, a guest the fixers cannot make boot on KVM
// with virtio; that error is the one the pipeline stops on. Everything else that cannot be
// fixed becomes a warning.
func Plan(f *Facts, opt PlanOptions) (*FixPlan, error) {
	if f == nil {
		return nil, fmt.Errorf("linux: plan: no facts: %w", ErrPlan)
	}
	if f.OS.Root == "" {
		return nil, fmt.Errorf("linux: plan: %w", ErrNoOS)
	}
	if f.OS.Type != "linux" {
		return nil, fmt.Errorf("linux: plan: %s holds %q, not Linux: %w", f.OS.Root, f.OS.Type, ErrUnsupported)
	}
	if f.OS.Distro == "" || f.OS.Distro == "unknown" {
		return nil, fmt.Errorf("linux: plan: %s: unknown Linux distribution: %w", f.OS.Root, ErrUnsupported)
	}
	switch f.OS.Arch {
	case "x86_64", "i386", "i686":
	default:
		return nil, fmt.Errorf("linux: plan: architecture %q: guest tools cannot run in the x86_64 appliance: %w", f.OS.Arch, ErrUnsupported)
	}
	p := &FixPlan{Facts: f, Options: opt}
	if len(f.Kernels) == 0 {
		return nil, fmt.Errorf("linux: plan: no kernel in /boot: %w", ErrNotBootable)
	}
	needGen := false
	for _, k := range f.Kernels {
		if !k.HasDisk() {
			p.warnf("kernel %s has no virtio disk drivers (%s); it will not boot on KVM", k.Version, missingVirtio(k))
			continue
		}
		p.Kernels = append(p.Kernels, k.Version)
		if k.NeedsInitramfsWork() {
			needGen = true
		}
	}
	if len(p.Kernels) == 0 {
		return nil, fmt.Errorf("linux: plan: no installed kernel has virtio_pci and virtio_blk or virtio_scsi (%s): %w", kernelList(f), ErrNotBootable)
	}
	if needGen && f.Initramfs.Generator == "" {
		return nil, fmt.Errorf("linux: plan: virtio drivers are modules but no initramfs generator (initramfs-tools, dracut, mkinitcpio) is installed: %w", ErrUnsupported)
	}
	planFstab(p)
	planNetwork(p)
	planVMware(p)
	planInitramfs(p, needGen)
	planBoot(p)
	if (f.SELinux == "enforcing" || f.SELinux == "permissive") && !p.Has(FixSELinux) {
		p.add(FixSELinux, "SELinux is "+f.SELinux+": files written offline need relabelling at the next boot", "/.autorelabel")
	}
	return p, nil
}

func missingVirtio(k Kernel) string {
	var m []string
	for _, v := range VirtioModules {
		if k.Virtio[v] == "" {
			m = append(m, v)
		}
	}
	return "missing " + strings.Join(m, ", ")
}

func kernelList(f *Facts) string {
	var v []string
	for _, k := range f.Kernels {
		v = append(v, k.Version+": "+missingVirtio(k))
	}
	return strings.Join(v, "; ")
}

func planFstab(p *FixPlan) {
	f := p.Facts
	for _, tab := range []struct {
		id      string
		entries []TabEntry
	}{{FixFstab, f.Fstab}, {FixCrypttab, f.Crypttab}} {
		var specs []string
		file := ""
		for _, e := range tab.entries {
			if !e.Unstable {
				continue
			}
			file = e.File
			if e.Stable == "" {
				p.warnf("%s line %d: %s %s, and no stable name is known for it; left as is", e.File, e.Line+1, e.Spec, e.Reason)
				continue
			}
			specs = append(specs, e.Spec+" → "+e.Stable)
		}
		if len(specs) > 0 {
			p.add(tab.id, "device names that change on KVM: "+strings.Join(specs, ", "), file)
		}
	}
}

// stableFor returns the stable replacement of an unstable device name, or "".
func (f *Facts) stableFor(spec string) string {
	if u, _ := unstable(spec); !u {
		return ""
	}
	dev, _, ok := f.mapSpec(spec, "")
	if !ok {
		return ""
	}
	fs, _ := f.filesystem(dev)
	return fs.StableSpec()
}

func planNetwork(p *FixPlan) {
	f, keep := p.Facts, p.Options.keep()
	files := map[string]bool{}
	var why []string
	for _, l := range f.Network.Links {
		if l.MAC != "" && !keep(l.MAC) || conf.NamesVMwareDriver(l.Driver) || l.Path != "" {
			files[l.File] = true
			why = append(why, fmt.Sprintf("%s names %s by %s", l.File, l.Name, matchDesc(l.MAC, l.Driver, l.Path)))
		}
	}
	for _, i := range f.Network.Interfaces {
		if i.MAC != "" && !keep(i.MAC) || conf.NamesVMwareDriver(i.Driver) {
			files[i.File] = true
			why = append(why, fmt.Sprintf("%s configures %s by %s", i.File, i.label(), matchDesc(i.MAC, i.Driver, "")))
		}
	}
	// A predictable name (ens192) that nothing pins will not be the KVM NIC's name: pin it to
	// the virtio driver when there is exactly one such NIC and udev honours .link files.
	pinned := map[string]bool{}
	for _, l := range f.Network.Links {
		pinned[l.Name] = true
	}
	names := map[string]bool{}
	for _, i := range f.Network.Interfaces {
		if strings.HasPrefix(i.Name, "en") && !pinned[i.Name] && i.MAC == "" && i.Driver == "" {
			names[i.Name] = true
		}
	}
	switch {
	case len(names) == 1 && f.Network.Udevd:
		for n := range names {
			files[LinkFile] = true
			why = append(why, fmt.Sprintf("%s is a VMware PCI-slot name that the KVM NIC will not get; pin it to the %s driver", n, VirtioDriver))
		}
	case len(names) > 1:
		p.warnf("interfaces %s use PCI-slot names that change on KVM and are not pinned; more than one, so none is renamed", strings.Join(sortedKeys(names), ", "))
	}
	if len(files) > 0 {
		p.add(FixNetwork, "the NIC is matched by VMware facts that differ on KVM: "+strings.Join(why, "; "), sortedKeys(files)...)
	}
	if len(f.Network.VMwareModules) > 0 {
		mf := map[string]bool{}
		var mods []string
		for _, m := range f.Network.VMwareModules {
			mf[m.File] = true
			mods = append(mods, m.Module)
		}
		p.add(FixVMwareModules, "VMware-only modules loaded at boot: "+strings.Join(mods, ", "), sortedKeys(mf)...)
	}
}

func matchDesc(mac, driver, pth string) string {
	var d []string
	if mac != "" {
		d = append(d, "MAC "+mac)
	}
	if driver != "" {
		d = append(d, "driver "+driver)
	}
	if pth != "" {
		d = append(d, "PCI path "+pth)
	}
	return strings.Join(d, ", ")
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func planVMware(p *FixPlan) {
	v := p.Facts.VMware
	if !v.Present() {
		return
	}
	var files []string
	files = append(files, v.Units...)
	what := strings.Join(v.Packages, ", ")
	if v.Tarball {
		what += " (VMware's tarball installer)"
		p.warnf("VMware Tools installed by VMware's own installer: only its units are disabled; run vmware-uninstall-tools.pl on the migrated guest")
	}
	p.add(FixVMwareTools, "VMware guest tools are useless on KVM and slow the boot: "+strings.TrimSpace(what), files...)
}

// initramfsModules are the drivers the initramfs fix adds: the virtio ones that are modules
// in at least one bootable kernel.
func (p *FixPlan) initramfsModules() []string {
	var out []string
	for _, m := range VirtioModules {
		for _, k := range p.Facts.Kernels {
			if k.Virtio[m] == "module" {
				out = append(out, m)
				break
			}
		}
	}
	return out
}

// dracutWants returns what h2kvm's dracut.conf.d file lists: the virtio drivers that are
// modules, plus dm_mod and the lvm dracut module when the root is a logical volume (a
// host-only image rebuilt elsewhere would not know that it needs them).
func (p *FixPlan) dracutWants() (drivers, modules []string) {
	drivers = p.initramfsModules()
	if p.Facts.RootLVM {
		drivers = append(drivers, "dm_mod")
		modules = []string{"lvm"}
	}
	return drivers, modules
}

func planInitramfs(p *FixPlan, needGen bool) {
	f := p.Facts
	ir := f.Initramfs
	if ir.Generator == "" {
		return
	}
	have := map[string]bool{}
	for _, m := range ir.Modules {
		have[m] = true
	}
	var missing []string
	for _, m := range p.initramfsModules() {
		if !have[m] {
			missing = append(missing, m)
		}
	}
	files := []string{}
	var why []string
	if ir.Generator == "dracut" {
		drivers, modules := p.dracutWants()
		for _, m := range drivers {
			if !have[m] && !slices.Contains(missing, m) {
				missing = append(missing, m)
			}
		}
		for _, m := range modules {
			if !slices.Contains(ir.DracutModules, m) {
				missing = append(missing, "dracut module "+m)
			}
		}
		if len(ir.OmittedVirtio) > 0 {
			files = append(files, ir.OmitFiles...)
			why = append(why, fmt.Sprintf("%s omit %s", strings.Join(ir.OmitFiles, ", "), strings.Join(ir.OmittedVirtio, " ")))
		}
	}
	if len(missing) > 0 {
		files = append(files, ir.Config)
		why = append(why, ir.Config+" lacks "+strings.Join(missing, " "))
	}
	if ir.Resume != "" && f.stableFor(ir.Resume) != "" {
		files = append(files, ir.ResumeFile)
		why = append(why, fmt.Sprintf("RESUME=%s in %s", ir.Resume, ir.ResumeFile))
	}
	for _, k := range f.Kernels {
		if k.HasDisk() && k.NeedsInitramfsWork() {
			img := k.Initramfs
			if img == "" {
				img = "(new initramfs for " + k.Version + ")"
			}
			files = append(files, img)
			why = append(why, fmt.Sprintf("%s lacks virtio drivers", img))
		}
	}
	if len(why) > 0 || needGen {
		p.add(FixInitramfs, strings.Join(why, "; ")+"; regenerate with "+ir.Generator, files...)
	}
}

func planBoot(p *FixPlan) {
	f := p.Facts
	b := f.Boot
	if b.Kind != "grub2" {
		for _, e := range b.Entries {
			if u, _ := unstable(e.Root); u {
				p.warnf("boot loader %q passes root=%s; h2kvm only fixes GRUB 2", b.Kind, e.Root)
			}
		}
		if b.Kind == "" {
			p.warnf("no boot loader configuration found")
		}
		return
	}
	regen := false
	var why []string
	if b.DefaultFile != "" {
		var r []string
		if b.DisableLinuxUUID && !f.RootLVM {
			r = append(r, "GRUB_DISABLE_LINUX_UUID=true makes grub-mkconfig write root=/dev/sdX")
		}
		for _, v := range []string{b.CmdlineLinux, b.CmdlineDefault} {
			for _, k := range []string{"root", "resume"} {
				if val, ok := conf.CmdlineGet(v, k); ok && f.stableFor(val) != "" {
					r = append(r, fmt.Sprintf("%s=%s in the default command line", k, val))
				}
			}
		}
		if len(r) > 0 {
			p.add(FixGrubDefault, strings.Join(r, "; "), b.DefaultFile)
			regen = true
		}
		if !p.Options.NoSerialConsole && !conf.HasSerialConsole(b.CmdlineLinux+" "+b.CmdlineDefault) {
			p.add(FixGrubConsole, "the kernel command line has no serial console (needed to watch the first boot on KVM)", b.DefaultFile)
			regen = true
		}
	}
	if b.DeviceMap != "" {
		p.add(FixDeviceMap, b.DeviceMap+" maps BIOS disks to VMware device names", b.DeviceMap)
		regen = true
	}
	bls := map[string]bool{}
	for _, e := range b.Entries {
		bad := false
		for _, v := range []string{e.Root, e.Resume} {
			if v != "" && f.stableFor(v) != "" {
				bad = true
				why = append(why, fmt.Sprintf("%s line %d: %s", e.File, e.Line+1, v))
			} else if u, reason := unstable(v); u {
				p.warnf("%s line %d: %s %s, and it matches no filesystem", e.File, e.Line+1, v, reason)
			}
		}
		if !e.Console && !p.Options.NoSerialConsole && b.DefaultFile != "" && !isBLS(e.File) {
			regen = true
			if !bad {
				why = append(why, fmt.Sprintf("%s line %d: no serial console", e.File, e.Line+1))
			}
		}
		if bad && isBLS(e.File) {
			bls[e.File] = true
		} else if bad {
			regen = true
		}
	}
	if len(bls) > 0 {
		p.add(FixBootEntries, "boot loader entries pass device names that change on KVM", sortedKeys(bls)...)
	}
	if regen {
		if len(b.Mkconfig) == 0 {
			p.add(FixBootEntries, "grub.cfg passes device names that change on KVM and the guest has no grub-mkconfig: edit it in place", b.Configs...)
			return
		}
		reason := "rebuild grub.cfg with " + strings.Join(b.Mkconfig, " ")
		if len(why) > 0 {
			reason += " (now: " + strings.Join(why, ", ") + ")"
		}
		p.add(FixGrubRegenerate, reason, b.Configs...)
	}
}

// isBLS reports whether a path is a Boot Loader Specification entry.
func isBLS(p string) bool { return path.Dir(p) == "/boot/loader/entries" }
