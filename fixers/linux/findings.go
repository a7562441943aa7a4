package linux

import (
	"fmt"
	"strings"

	"github.com/h2kvm/h2kvm/fixers/linux/conf"
)

// addFindings explains, from the facts, what will break on KVM with virtio and why.
func addFindings(f *Facts) {
	for _, e := range append(append([]TabEntry{}, f.Fstab...), f.Crypttab...) {
		if !e.Unstable {
			continue
		}
		sev := SeverityWarn
		if e.MountPoint == "/" || e.MountPoint == "/boot" || e.MountPoint == "/usr" || e.File == "/etc/crypttab" {
			sev = SeverityBreaks
		}
		f.finding("unstable-device-name", sev, fmt.Sprintf("%s line %d: %s (%s) %s", e.File, e.Line+1, e.Spec, e.MountPoint, e.Reason))
	}
	switch {
	case f.Boot.DisableLinuxUUID && f.RootLVM:
		f.finding("grub-disable-uuid", SeverityInfo, "/etc/default/grub sets GRUB_DISABLE_LINUX_UUID=true; harmless: the root is a logical volume, which grub-mkconfig names by /dev/mapper")
	case f.Boot.DisableLinuxUUID:
		f.finding("grub-disable-uuid", SeverityBreaks, "/etc/default/grub sets GRUB_DISABLE_LINUX_UUID=true: grub-mkconfig writes root=/dev/sdX")
	}
	if f.RootLVM {
		f.finding("root-on-lvm", SeverityInfo, fmt.Sprintf("the root filesystem is the logical volume %s: the initramfs needs device-mapper and LVM", f.OS.Root))
	}
	if ir := f.Initramfs; ir.Generator == "dracut" {
		if ir.HostOnly {
			f.finding("initramfs-host-only", SeverityWarn, fmt.Sprintf("dracut is host-only (%s): a rebuilt image holds only the drivers of the machine that builds it, so virtio must be added by name", ir.HostOnlyFile))
		}
		if len(ir.OmittedVirtio) > 0 {
			f.finding("initramfs-omits-virtio", SeverityBreaks, fmt.Sprintf("%s omit %s: dracut keeps them out of every image, even when asked for", strings.Join(ir.OmitFiles, ", "), strings.Join(ir.OmittedVirtio, " ")))
		}
	}
	for _, e := range f.Boot.Entries {
		if u, reason := unstable(e.Root); u {
			f.finding("unstable-root", SeverityBreaks, fmt.Sprintf("%s line %d: root=%s %s", e.File, e.Line+1, e.Root, reason))
		}
	}
	if f.Boot.DeviceMap != "" {
		f.finding("grub-device-map", SeverityWarn, f.Boot.DeviceMap+" names BIOS disks by VMware devices")
	}
	ok := 0
	for _, k := range f.Kernels {
		switch {
		case !k.HasDisk():
			f.finding("kernel-no-virtio", SeverityWarn, fmt.Sprintf("kernel %s: %s", k.Version, missingVirtio(k)))
		case k.NeedsInitramfsWork():
			why := "does not hold virtio_blk/virtio_scsi/virtio_pci"
			if k.InitramfsVirtio == nil {
				why = "could not be listed (" + k.InitramfsError + ")"
				if k.Initramfs == "" {
					why = "does not exist"
				}
			}
			f.finding("initramfs-no-virtio", SeverityBreaks, fmt.Sprintf("initramfs of kernel %s %s: the root disk is not found on virtio", k.Version, why))
			ok++
		default:
			ok++
		}
	}
	if ok == 0 {
		f.finding("no-virtio-kernel", SeverityBreaks, "no installed kernel has virtio disk drivers")
	}
	for _, l := range f.Network.Links {
		if l.MAC != "" {
			f.finding("nic-pinned-mac", SeverityBreaks, fmt.Sprintf("%s gives the name %s to MAC %s only; the KVM NIC has another MAC unless the domain keeps it", l.File, l.Name, l.MAC))
		}
		if conf.VMwareNICDrivers[l.Driver] {
			f.finding("nic-pinned-driver", SeverityBreaks, fmt.Sprintf("%s gives the name %s to driver %s only", l.File, l.Name, l.Driver))
		}
	}
	for _, i := range f.Network.Interfaces {
		if i.MAC != "" {
			f.finding("nic-config-mac", SeverityBreaks, fmt.Sprintf("%s configures %s for MAC %s only", i.File, i.label(), i.MAC))
		}
		if i.Method == "static" {
			f.finding("static-ip", SeverityInfo, fmt.Sprintf("%s: %s has a static address %s (kept)", i.File, i.label(), strings.Join(i.Addresses, ", ")))
		}
	}
	for _, m := range f.Network.VMwareModules {
		f.finding("vmware-module", SeverityWarn, fmt.Sprintf("%s loads %s, which exists only on VMware", m.File, m.Module))
	}
	if f.VMware.Present() {
		f.finding("vmware-tools", SeverityWarn, "VMware tools installed: "+strings.Join(append(append([]string{}, f.VMware.Packages...), f.VMware.Units...), ", "))
	}
	if f.SELinux == "enforcing" {
		f.finding("selinux", SeverityWarn, "SELinux is enforcing: offline changes need a relabel")
	}
	if f.CloudInit {
		f.finding("cloud-init", SeverityInfo, "cloud-init is installed: on KVM it may wait for a datasource at boot")
	}
	if f.Boot.Kind == "grub2" && !conf.HasSerialConsole(f.Boot.CmdlineLinux+" "+f.Boot.CmdlineDefault) {
		f.finding("no-serial-console", SeverityInfo, "the kernel command line has no serial console")
	}
}
