package linux

import (
	"slices"
	"strings"
	"testing"
)

// vmwareLVM returns facts shaped like the debian-lvm test guest before fixing: root and swap
// on LVM by /dev/mapper names, /boot by /dev/sda1, dracut host-only omitting virtio, and a
// systemd-networkd .network file matching the VMware MAC.
func vmwareLVM() *Facts {
	virtio := map[string]string{"virtio_pci": "module", "virtio_blk": "module", "virtio_scsi": "module", "virtio_net": "module"}
	return &Facts{
		OS:    OSFacts{Root: "/dev/vgsys/root", Type: "linux", Distro: "debian", Major: 12, Arch: "x86_64", PackageFormat: "deb"},
		Disks: []Disk{{Device: "/dev/sda", PartitionTable: "msdos"}},
		Filesystems: []Filesystem{
			{Device: "/dev/sda1", Type: "ext4", UUID: "11111111-2222-3333-4444-555555555555", PartUUID: "abcd0001-01", Disk: "/dev/sda", PartNum: 1},
			{Device: "/dev/vgsys/root", Type: "ext4", UUID: "22222222-2222-3333-4444-555555555555", LV: true},
			{Device: "/dev/vgsys/swap", Type: "swap", UUID: "33333333-2222-3333-4444-555555555555", LV: true},
		},
		LVM: true, RootLVM: true,
		Mounts: []Mount{{Device: "/dev/vgsys/root", MountPoint: "/"}, {Device: "/dev/sda1", MountPoint: "/boot"}},
		Fstab: []TabEntry{
			{File: "/etc/fstab", Line: 1, Spec: "/dev/mapper/vgsys-root", MountPoint: "/", Type: "ext4", Device: "/dev/vgsys/root"},
			{File: "/etc/fstab", Line: 2, Spec: "/dev/sda1", MountPoint: "/boot", Type: "ext4", Device: "/dev/sda1",
				Unstable: true, Stable: "UUID=11111111-2222-3333-4444-555555555555"},
			{File: "/etc/fstab", Line: 3, Spec: "/dev/mapper/vgsys-swap", MountPoint: "none", Type: "swap", Device: "/dev/vgsys/swap"},
		},
		Kernels: []Kernel{{Version: "6.1.0-28-amd64", Image: "/boot/vmlinuz-6.1.0-28-amd64", Virtio: virtio,
			Initramfs: "/boot/initrd.img-6.1.0-28-amd64", InitramfsVirtio: map[string]bool{}}},
		Initramfs: Initramfs{Generator: "dracut", Config: DracutConfig,
			Modules:  []string{"vmw_pvscsi", "mptspi", "mptsas", "sd_mod", "ata_piix", "ahci", "dm_mod", "ext4"},
			HostOnly: true, HostOnlyFile: "/etc/dracut.conf.d/10-vmware.conf",
			OmittedVirtio: []string{"virtio_blk", "virtio_scsi", "virtio_pci", "virtio_net"},
			OmitFiles:     []string{"/etc/dracut.conf.d/10-vmware.conf"}, DracutModules: []string{"lvm"}},
		Firmware: "bios",
		Boot: Bootloader{Kind: "grub2", DefaultFile: "/etc/default/grub", CmdlineLinux: "console=tty0 console=ttyS0,115200n8",
			DisableLinuxUUID: true, Configs: []string{"/boot/grub/grub.cfg"}, Mkconfig: []string{"update-grub"},
			Entries: []BootEntry{{File: "/boot/grub/grub.cfg", Line: 80, Kernel: "/vmlinuz-6.1.0-28-amd64",
				Args: "root=/dev/mapper/vgsys-root ro console=tty0 console=ttyS0,115200n8", Root: "/dev/mapper/vgsys-root", Console: true}}},
		Network: Network{Backends: []string{"systemd-networkd"}, Udevd: true,
			Interfaces: []Interface{{Backend: "systemd-networkd", File: "/etc/systemd/network/10-vmware.network", Method: "dhcp", MAC: "00:50:56:a1:b2:05"}}},
		VMware: VMwareTools{Packages: []string{"open-vm-tools"}},
	}
}

func TestPlanLVMDracut(t *testing.T) {
	f := vmwareLVM()
	addFindings(f)
	found := map[string]string{}
	for _, fd := range f.Findings {
		found[fd.ID] = fd.Severity
	}
	for id, sev := range map[string]string{"unstable-device-name": SeverityBreaks, "initramfs-no-virtio": SeverityBreaks,
		"initramfs-omits-virtio": SeverityBreaks, "initramfs-host-only": SeverityWarn, "root-on-lvm": SeverityInfo,
		"grub-disable-uuid": SeverityInfo, "nic-config-mac": SeverityBreaks} {
		if found[id] != sev {
			t.Errorf("finding %s: severity %q, want %q (all: %v)", id, found[id], sev, found)
		}
	}
	p, err := Plan(f, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// /dev/mapper names are stable and the LVM root makes GRUB_DISABLE_LINUX_UUID harmless:
	// no GRUB change.
	want := []string{FixFstab, FixNetwork, FixVMwareTools, FixInitramfs}
	if got := ids(p); !slices.Equal(got, want) {
		t.Fatalf("fixes %v, want %v", got, want)
	}
	if r := p.Fixes[0].Reason; !strings.Contains(r, "/dev/sda1 → UUID=") || strings.Contains(r, "mapper") {
		t.Errorf("fstab reason %q", r)
	}
	ir := p.Fixes[3]
	if !slices.Contains(ir.Files, "/etc/dracut.conf.d/10-vmware.conf") || !slices.Contains(ir.Files, DracutConfig) ||
		!slices.Contains(ir.Files, "/boot/initrd.img-6.1.0-28-amd64") {
		t.Errorf("initramfs files %v", ir.Files)
	}
	if !strings.Contains(ir.Reason, "omit virtio_blk") || !strings.Contains(ir.Reason, "regenerate with dracut") {
		t.Errorf("initramfs reason %q", ir.Reason)
	}
	drivers, modules := p.dracutWants()
	if !slices.Equal(drivers, []string{"virtio_pci", "virtio_blk", "virtio_scsi", "virtio_net", "dm_mod"}) || !slices.Equal(modules, []string{"lvm"}) {
		t.Errorf("dracut wants %v %v", drivers, modules)
	}
	// Keeping the VMware MAC keeps the .network file.
	if p, _ := Plan(vmwareLVM(), PlanOptions{KeepMACs: []string{"00:50:56:A1:B2:05"}}); p.Has(FixNetwork) {
		t.Errorf("network fix although the MAC is kept: %+v", p.Fixes)
	}
}

func TestPlanLVMFixedIsEmpty(t *testing.T) {
	f := vmwareLVM()
	f.Fstab[1].Spec, f.Fstab[1].Unstable = f.Fstab[1].Stable, false
	for _, m := range VirtioModules {
		f.Kernels[0].InitramfsVirtio[m] = true
	}
	f.Initramfs.Modules = append(f.Initramfs.Modules, "virtio_pci", "virtio_blk", "virtio_scsi", "virtio_net", "dm_mod")
	f.Initramfs.OmittedVirtio, f.Initramfs.OmitFiles = nil, nil
	f.Network.Interfaces[0].MAC, f.Network.Interfaces[0].Driver = "", "virtio_net"
	f.VMware = VMwareTools{}
	p, err := Plan(f, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Fixes) != 0 || len(p.Warnings) != 0 {
		t.Errorf("fixed guest: fixes %+v warnings %v", p.Fixes, p.Warnings)
	}
}
