package linux

import (
	"errors"
	"strings"
	"testing"
)

// vmwareDebian returns facts shaped like the debian-bios test guest before fixing.
func vmwareDebian() *Facts {
	byPath := "/dev/disk/by-path/pci-0000:03:00.0-scsi-0:0:0:0"
	virtio := map[string]string{"virtio_pci": "module", "virtio_blk": "module", "virtio_scsi": "module", "virtio_net": "module"}
	return &Facts{
		OS:    OSFacts{Root: "/dev/sda1", Type: "linux", Distro: "debian", Major: 12, Arch: "x86_64", PackageFormat: "deb"},
		Disks: []Disk{{Device: "/dev/sda", PartitionTable: "msdos"}},
		Filesystems: []Filesystem{
			{Device: "/dev/sda1", Type: "ext4", UUID: "11111111-2222-3333-4444-555555555555", PartUUID: "abcd0001-01", Disk: "/dev/sda", PartNum: 1},
			{Device: "/dev/sda2", Type: "swap", UUID: "66666666-7777-8888-9999-000000000000", PartUUID: "abcd0001-02", Disk: "/dev/sda", PartNum: 2},
		},
		Mounts: []Mount{{Device: "/dev/sda1", MountPoint: "/"}},
		Fstab: []TabEntry{
			{File: "/etc/fstab", Line: 1, Spec: byPath + "-part1", MountPoint: "/", Type: "ext4", Device: "/dev/sda1",
				Unstable: true, Stable: "UUID=11111111-2222-3333-4444-555555555555"},
			{File: "/etc/fstab", Line: 2, Spec: byPath + "-part2", MountPoint: "none", Type: "swap", Device: "/dev/sda2",
				Unstable: true, Stable: "UUID=66666666-7777-8888-9999-000000000000"},
		},
		Kernels: []Kernel{{Version: "6.1.0-28-amd64", Image: "/boot/vmlinuz-6.1.0-28-amd64", Virtio: virtio,
			Initramfs: "/boot/initrd.img-6.1.0-28-amd64", InitramfsVirtio: map[string]bool{}}},
		Initramfs: Initramfs{Generator: "initramfs-tools", Config: "/etc/initramfs-tools/modules",
			Modules: []string{"vmw_pvscsi", "mptspi", "sd_mod", "ata_piix", "ahci", "ext4"}, ModulesPolicy: "list"},
		Firmware: "bios",
		Boot: Bootloader{Kind: "grub2", DefaultFile: "/etc/default/grub", CmdlineLinux: "console=tty0 console=ttyS0,115200n8",
			DisableLinuxUUID: true, Configs: []string{"/boot/grub/grub.cfg"}, Mkconfig: []string{"update-grub"},
			Entries: []BootEntry{{File: "/boot/grub/grub.cfg", Line: 80, Kernel: "/boot/vmlinuz-6.1.0-28-amd64",
				Args: "root=/dev/sda1 ro console=tty0 console=ttyS0,115200n8", Root: "/dev/sda1", Console: true}}},
		Network: Network{Backends: []string{"ifupdown"}, Udevd: true,
			Interfaces: []Interface{{Name: "ens192", Backend: "ifupdown", File: "/etc/network/interfaces", Method: "dhcp"}},
			Links:      []LinkRule{{File: "/etc/systemd/network/10-vmware.link", Kind: "systemd-link", MAC: "00:50:56:a1:b2:01", Name: "ens192"}}},
		VMware: VMwareTools{Packages: []string{"open-vm-tools"}},
	}
}

func ids(p *FixPlan) []string {
	var out []string
	for _, f := range p.Fixes {
		out = append(out, f.ID)
	}
	return out
}

func TestPlanVMwareDebian(t *testing.T) {
	p, err := Plan(vmwareDebian(), PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{FixFstab, FixNetwork, FixVMwareTools, FixInitramfs, FixGrubDefault, FixGrubRegenerate}
	if got := ids(p); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("fixes %v, want %v", got, want)
	}
	for _, f := range p.Fixes {
		if f.Reason == "" || len(f.Files) == 0 && f.ID != FixVMwareTools {
			t.Errorf("fix %+v lacks a reason or files", f)
		}
	}
	if !strings.Contains(p.Fixes[3].Reason, "virtio_pci virtio_blk virtio_scsi virtio_net") {
		t.Errorf("initramfs reason %q", p.Fixes[3].Reason)
	}
	if len(p.Kernels) != 1 {
		t.Errorf("kernels %v", p.Kernels)
	}
}

func TestPlanOptions(t *testing.T) {
	// Keeping the VMware MAC keeps the .link file.
	p, err := Plan(vmwareDebian(), PlanOptions{KeepMACs: []string{"00-50-56-A1-B2-01"}})
	if err != nil {
		t.Fatal(err)
	}
	if p.Has(FixNetwork) {
		t.Errorf("network fix planned although the MAC is kept: %+v", p.Fixes)
	}
	// No serial console wanted: none added even when missing.
	f := vmwareDebian()
	f.Boot.CmdlineLinux = "quiet"
	f.Boot.Entries[0].Console = false
	if p, _ := Plan(f, PlanOptions{}); !p.Has(FixGrubConsole) {
		t.Error("serial console not planned")
	}
	if p, _ := Plan(f, PlanOptions{NoSerialConsole: true}); p.Has(FixGrubConsole) {
		t.Error("serial console planned although disabled")
	}
	// An unpinned VMware PCI-slot name gets a driver-matched .link file.
	f = vmwareDebian()
	f.Network.Links = nil
	p, _ = Plan(f, PlanOptions{})
	if !p.Has(FixNetwork) || p.Fixes[1].Files[0] != LinkFile {
		t.Errorf("unpinned ens192: %+v", p.Fixes)
	}
}

func TestPlanFixedGuestIsEmpty(t *testing.T) {
	f := vmwareDebian()
	for i := range f.Fstab {
		f.Fstab[i].Spec, f.Fstab[i].Unstable = f.Fstab[i].Stable, false
	}
	for _, m := range VirtioModules {
		f.Kernels[0].InitramfsVirtio[m] = true
	}
	f.Initramfs.Modules = append(f.Initramfs.Modules, VirtioModules...)
	f.Boot.DisableLinuxUUID = false
	f.Boot.Entries[0].Root = "UUID=11111111-2222-3333-4444-555555555555"
	f.Network.Links[0].MAC, f.Network.Links[0].Driver = "", "virtio_net"
	f.VMware = VMwareTools{}
	p, err := Plan(f, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Fixes) != 0 || len(p.Warnings) != 0 {
		t.Errorf("fixed guest: fixes %+v warnings %v", p.Fixes, p.Warnings)
	}
}

func TestPlanRefuses(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Facts)
		want   error
	}{
		{"no OS", func(f *Facts) { *f = Facts{} }, ErrNoOS},
		{"windows", func(f *Facts) { f.OS.Type = "windows" }, ErrUnsupported},
		{"unknown distro", func(f *Facts) { f.OS.Distro = "unknown" }, ErrUnsupported},
		{"arm guest", func(f *Facts) { f.OS.Arch = "aarch64" }, ErrUnsupported},
		{"no kernel", func(f *Facts) { f.Kernels = nil }, ErrNotBootable},
		{"no virtio", func(f *Facts) {
			f.Kernels[0].Virtio = map[string]string{"virtio_pci": "module", "virtio_net": "module"}
		}, ErrNotBootable},
		{"no generator", func(f *Facts) { f.Initramfs = Initramfs{} }, ErrUnsupported},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := vmwareDebian()
			tc.mutate(f)
			p, err := Plan(f, PlanOptions{})
			if !errors.Is(err, tc.want) || p != nil {
				t.Errorf("Plan = %v, %v; want %v", p, err, tc.want)
			}
		})
	}
	if _, err := Plan(nil, PlanOptions{}); !errors.Is(err, ErrPlan) {
		t.Errorf("nil facts: %v", err)
	}
	// Built-in virtio needs no initramfs generator.
	f := vmwareDebian()
	f.Initramfs = Initramfs{}
	for m := range f.Kernels[0].Virtio {
		f.Kernels[0].Virtio[m] = "builtin"
	}
	if _, err := Plan(f, PlanOptions{}); err != nil {
		t.Errorf("built-in virtio without generator refused: %v", err)
	}
}

func TestMapSpec(t *testing.T) {
	f := vmwareDebian()
	f.Disks = append(f.Disks, Disk{Device: "/dev/sdb", PartitionTable: "gpt"})
	f.Filesystems = append(f.Filesystems,
		Filesystem{Device: "/dev/sdb1", Type: "xfs", UUID: "aaaa", Label: "data", PartUUID: "B7E1-0001", PartLabel: "srv", Disk: "/dev/sdb", PartNum: 1},
		Filesystem{Device: "/dev/vg0/lv-home", Type: "ext4", UUID: "bbbb", LV: true})
	tests := []struct {
		spec, typ, dev string
		guessed, ok    bool
	}{
		{"UUID=aaaa", "", "/dev/sdb1", false, true},
		{"UUID=AAAA", "", "/dev/sdb1", false, true},
		{"LABEL=data", "", "/dev/sdb1", false, true},
		{"LABEL=DATA", "", "", false, false},
		{"PARTUUID=b7e1-0001", "", "/dev/sdb1", false, true},
		{"/dev/disk/by-partlabel/srv", "", "/dev/sdb1", false, true},
		{"/dev/sdb1", "xfs", "/dev/sdb1", true, true},
		{"/dev/sdb1", "ext4", "", false, false},
		{"/dev/disk/by-path/pci-0000:03:00.0-scsi-0:0:1:0-part1", "xfs", "/dev/sdb1", true, true},
		{"/dev/disk/by-path/pci-0000:03:00.0-scsi-0:0:0:0-part2", "swap", "/dev/sda2", true, true},
		{"/dev/disk/by-id/wwn-0x6000c2-part1", "xfs", "/dev/sdb1", true, true},
		{"/dev/mapper/vg0-lv--home", "", "/dev/vg0/lv-home", false, true},
		{"/dev/vg0/lv-home", "", "/dev/vg0/lv-home", false, true},
		{"/dev/sdz1", "", "", false, false},
	}
	for _, tc := range tests {
		dev, guessed, ok := f.mapSpec(tc.spec, tc.typ)
		if dev != tc.dev || guessed != tc.guessed || ok != tc.ok {
			t.Errorf("mapSpec(%q, %q) = %q %v %v, want %q %v %v", tc.spec, tc.typ, dev, guessed, ok, tc.dev, tc.guessed, tc.ok)
		}
	}
}

// TestPlanDriverLists: a unit or netplan entry that matches a list of drivers naming a VMware
// one needs the network fix, as one naming a single VMware driver does.
func TestPlanDriverLists(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(n *Network)
	}{
		{"systemd link", func(n *Network) {
			n.Links = []LinkRule{{File: "/etc/systemd/network/10-vmware.link", Kind: "systemd-link", Driver: "vmxnet3 e1000", Name: "ens192"}}
		}},
		{"netplan", func(n *Network) {
			n.Links = nil
			n.Interfaces = []Interface{{Name: "ens192", Backend: "netplan", File: "/etc/netplan/50-cloud-init.yaml", Driver: "[vmxnet3, e1000]", Method: "dhcp"}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := vmwareDebian()
			tc.set(&f.Network)
			p, err := Plan(f, PlanOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if got := ids(p); !strings.Contains(strings.Join(got, ","), FixNetwork) {
				t.Errorf("fixes %v lack %s", got, FixNetwork)
			}
		})
	}
}
