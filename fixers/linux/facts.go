package linux

import (
	"github.com/h2kvm/h2kvm/fixers/linux/conf"
)

// Facts is everything Inspect learns about a guest. All paths are guest paths; "device" fields
// name appliance devices (/dev/sda1, /dev/vg/lv) valid for the handle Inspect ran on.
type Facts struct {
	OS          OSFacts      `json:"os"`
	Disks       []Disk       `json:"disks"`
	Filesystems []Filesystem `json:"filesystems"`
	// Mounts is how the guest's filesystems were mounted for inspection (root first, then by
	// depth); Apply mounts the same way, read-write.
	Mounts    []Mount     `json:"mounts"`
	Fstab     []TabEntry  `json:"fstab"`
	Crypttab  []TabEntry  `json:"crypttab,omitempty"`
	Kernels   []Kernel    `json:"kernels"`
	Initramfs Initramfs   `json:"initramfs"`
	Firmware  string      `json:"firmware"` // "bios" or "uefi"
	ESP       string      `json:"esp,omitempty"`
	Boot      Bootloader  `json:"bootloader"`
	Network   Network     `json:"network"`
	VMware    VMwareTools `json:"vmware_tools"`
	SELinux   string      `json:"selinux,omitempty"` // enforcing, permissive, disabled, or ""
	CloudInit bool        `json:"cloud_init"`
	LVM       bool        `json:"lvm"`
	// RootLVM: the root filesystem is a logical volume (its initramfs needs device-mapper and
	// LVM; /dev/mapper and /dev/VG/LV names are stable across hypervisors).
	RootLVM  bool      `json:"root_lvm,omitempty"`
	Findings []Finding `json:"findings"`
	// Timings are the seconds each inspection step took (inspect_os, devices, mount, kernels,
	// initramfs, ...), for tuning; under TCG the appliance is slow.
	Timings map[string]float64 `json:"timings,omitempty"`
}

// OSFacts identify the operating system.
type OSFacts struct {
	// Root is the appliance device of the root filesystem ("" when no OS was found).
	Root           string   `json:"root"`
	OtherRoots     []string `json:"other_roots,omitempty"`
	Type           string   `json:"type"`   // linux, windows, ...
	Distro         string   `json:"distro"` // debian, ubuntu, rhel, ...
	Product        string   `json:"product,omitempty"`
	Major          int      `json:"major"`
	Minor          int      `json:"minor"`
	Arch           string   `json:"arch"`
	Hostname       string   `json:"hostname,omitempty"`
	PackageFormat  string   `json:"package_format,omitempty"`  // deb, rpm, ...
	PackageManager string   `json:"package_manager,omitempty"` // apt, dnf, yum, zypper, ...
}

// Disk is one disk of the appliance.
type Disk struct {
	Device         string `json:"device"`
	PartitionTable string `json:"partition_table,omitempty"` // msdos, gpt, or "" (none)
}

// Filesystem is one filesystem (or swap area) the appliance sees, with its blkid facts.
type Filesystem struct {
	Device    string `json:"device"`
	Type      string `json:"type"`
	UUID      string `json:"uuid,omitempty"`
	Label     string `json:"label,omitempty"`
	PartUUID  string `json:"partuuid,omitempty"`
	PartLabel string `json:"partlabel,omitempty"`
	// Disk and PartNum locate a partition (Disk is its whole-disk device); PartNum is 0 for
	// filesystems that are not partitions (LVs, whole disks).
	Disk    string `json:"disk,omitempty"`
	PartNum int    `json:"partnum,omitempty"`
	// GPTType is the partition type GUID on GPT disks (ESP: C12A7328-...).
	GPTType string `json:"gpt_type,omitempty"`
	LV      bool   `json:"lv,omitempty"`
}

// StableSpec returns the best stable fstab name for the filesystem: UUID=, else PARTUUID=,
// else LABEL=, else "".
func (f Filesystem) StableSpec() string {
	switch {
	case f.LV:
		return ""
	case f.UUID != "":
		return "UUID=" + f.UUID
	case f.PartUUID != "":
		return "PARTUUID=" + f.PartUUID
	case f.Label != "":
		return "LABEL=" + f.Label
	}
	return ""
}

// Mount is one filesystem mounted for inspection and fixing.
type Mount struct {
	Device     string `json:"device"`
	MountPoint string `json:"mount_point"`
	Options    string `json:"options,omitempty"` // mount options passed (subvol=...)
}

// TabEntry is an /etc/fstab or /etc/crypttab entry and what it maps to.
type TabEntry struct {
	File       string `json:"file"`
	Line       int    `json:"line"`
	Spec       string `json:"spec"`
	MountPoint string `json:"mount_point,omitempty"` // fstab: mount point; crypttab: mapped name
	Type       string `json:"type,omitempty"`
	Options    string `json:"options,omitempty"`
	// Device is the appliance device Spec was mapped to ("" when unmapped); Guessed says the
	// mapping rests on partition number and type rather than an identifier.
	Device  string `json:"device,omitempty"`
	Guessed bool   `json:"guessed,omitempty"`
	// Unstable: Spec will not name the same device on KVM (Reason says why); Stable is the
	// replacement Spec ("" when none is known).
	Unstable bool   `json:"unstable,omitempty"`
	Reason   string `json:"reason,omitempty"`
	Stable   string `json:"stable,omitempty"`
}

// Kernel is one installed kernel.
type Kernel struct {
	Version    string `json:"version"`
	Image      string `json:"image"`
	ModulesDir string `json:"modules_dir,omitempty"`
	// Virtio maps each of VirtioModules to how the kernel provides it: "module", "builtin" or
	// "" (missing).
	Virtio map[string]string `json:"virtio"`
	// Initramfs is this kernel's initramfs image ("" when none exists).
	Initramfs string `json:"initramfs,omitempty"`
	// InitramfsVirtio maps each needed module to whether the image holds it (true also for a
	// built-in driver); nil when the image could not be listed.
	InitramfsVirtio map[string]bool `json:"initramfs_virtio,omitempty"`
	InitramfsError  string          `json:"initramfs_error,omitempty"`
}

// VirtioModules are the drivers a guest needs for a virtio disk and NIC on a PCI machine.
var VirtioModules = []string{"virtio_pci", "virtio_blk", "virtio_scsi", "virtio_net"}

// HasDisk reports whether the kernel can reach a virtio disk: virtio_pci plus virtio_blk or
// virtio_scsi.
func (k Kernel) HasDisk() bool {
	return k.Virtio["virtio_pci"] != "" && (k.Virtio["virtio_blk"] != "" || k.Virtio["virtio_scsi"] != "")
}

// NeedsInitramfsWork reports whether the kernel's virtio disk drivers are modules that its
// initramfs lacks (or whose presence is unknown).
func (k Kernel) NeedsInitramfsWork() bool {
	for _, m := range []string{"virtio_pci", "virtio_blk", "virtio_scsi"} {
		if k.Virtio[m] == "module" && (k.InitramfsVirtio == nil || !k.InitramfsVirtio[m]) {
			return true
		}
	}
	return false
}

// Initramfs describes the initramfs generator.
type Initramfs struct {
	// Generator is initramfs-tools, dracut, mkinitcpio or "".
	Generator string `json:"generator"`
	// Config is the file the fix edits to add modules; Modules the modules it lists now.
	Config  string   `json:"config,omitempty"`
	Modules []string `json:"modules,omitempty"`
	// ModulesPolicy is initramfs-tools' MODULES= (most, dep, list, netboot).
	ModulesPolicy string `json:"modules_policy,omitempty"`
	// Resume is initramfs-tools' RESUME= setting and the file holding it.
	Resume     string `json:"resume,omitempty"`
	ResumeFile string `json:"resume_file,omitempty"`
	// HostOnly: dracut's hostonly="yes" (HostOnlyFile sets it last). A host-only image only
	// holds the drivers of the machine that builds it, so virtio must be asked for by name.
	HostOnly     bool   `json:"host_only,omitempty"`
	HostOnlyFile string `json:"host_only_file,omitempty"`
	// OmittedVirtio are the virtio drivers dracut's omit_drivers keeps out of every image (even
	// out of add_drivers); OmitFiles are the configuration files that omit them.
	OmittedVirtio []string `json:"omitted_virtio,omitempty"`
	OmitFiles     []string `json:"omit_files,omitempty"`
	// DracutModules are the dracut modules the configuration adds (add_dracutmodules).
	DracutModules []string `json:"dracut_modules,omitempty"`
}

// Bootloader describes the boot loader.
type Bootloader struct {
	// Kind is grub2, grub-legacy, extlinux, systemd-boot or "".
	Kind string `json:"kind"`
	// DefaultFile is /etc/default/grub when present.
	DefaultFile string `json:"default_file,omitempty"`
	// CmdlineLinux and CmdlineDefault are GRUB_CMDLINE_LINUX and GRUB_CMDLINE_LINUX_DEFAULT.
	CmdlineLinux     string `json:"cmdline_linux"`
	CmdlineDefault   string `json:"cmdline_default"`
	DisableLinuxUUID bool   `json:"disable_linux_uuid"`
	// Configs are the grub.cfg files found; Entries their kernel lines (and BLS options).
	Configs []string    `json:"configs,omitempty"`
	Entries []BootEntry `json:"entries,omitempty"`
	// DeviceMap is /boot/grub*/device.map when present (it names BIOS disks by VMware devices).
	DeviceMap string `json:"device_map,omitempty"`
	// Mkconfig is the guest command that regenerates grub.cfg ("update-grub",
	// "grub2-mkconfig -o /boot/grub2/grub.cfg", ...), "" when none was found.
	Mkconfig []string `json:"mkconfig,omitempty"`
}

// BootEntry is a kernel command line found in a boot loader configuration.
type BootEntry struct {
	File    string `json:"file"`
	Line    int    `json:"line"`
	Kernel  string `json:"kernel,omitempty"`
	Args    string `json:"args"`
	Root    string `json:"root,omitempty"`
	Resume  string `json:"resume,omitempty"`
	Console bool   `json:"serial_console"`
}

// Network describes the guest's network configuration.
type Network struct {
	// Backends in use: ifupdown, netplan, networkmanager, network-scripts, systemd-networkd.
	Backends   []string    `json:"backends"`
	Interfaces []Interface `json:"interfaces"`
	// Links are systemd .link files and udev rules that name interfaces.
	Links []LinkRule `json:"links,omitempty"`
	// VMwareDrivers are VMware-only kernel modules the guest loads explicitly (/etc/modules...).
	VMwareModules []ModuleRef `json:"vmware_modules,omitempty"`
	// Udevd: the guest has systemd-udevd (so .link files are honoured).
	Udevd bool `json:"udevd"`
}

// Interface is an interface a configuration file sets up.
type Interface struct {
	Name      string   `json:"name"`
	Backend   string   `json:"backend"`
	File      string   `json:"file"`
	Method    string   `json:"method"` // dhcp, static, manual, loopback, ...
	Addresses []string `json:"addresses,omitempty"`
	// MAC is a MAC address the configuration matches or sets; Driver a driver it matches.
	MAC    string `json:"mac,omitempty"`
	Driver string `json:"driver,omitempty"`
}

// LinkRule is a rule that names an interface (a systemd .link file, a udev rule).
type LinkRule struct {
	File   string `json:"file"`
	Kind   string `json:"kind"` // systemd-link or udev-rule
	MAC    string `json:"mac,omitempty"`
	Driver string `json:"driver,omitempty"`
	Path   string `json:"path,omitempty"`
	Name   string `json:"name,omitempty"`
}

// ModuleRef is an explicit load of a kernel module.
type ModuleRef struct {
	File   string `json:"file"`
	Module string `json:"module"`
}

// VMwareTools describes VMware's guest tools.
type VMwareTools struct {
	Packages []string `json:"packages,omitempty"`
	// Units are enabled unit symlinks (/etc/systemd/system/*.wants/...) and init scripts.
	Units []string `json:"units,omitempty"`
	// Tarball: VMware Tools installed from VMware's own installer (/etc/vmware-tools).
	Tarball bool `json:"tarball,omitempty"`
}

// Present reports whether any VMware tools were found.
func (v VMwareTools) Present() bool {
	return len(v.Packages) > 0 || len(v.Units) > 0 || v.Tarball
}

// Severity of a finding.
const (
	SeverityBreaks = "breaks" // the guest will not boot or reach the network on KVM as it is
	SeverityWarn   = "warning"
	SeverityInfo   = "info"
)

// Finding is something inspection noticed that matters on KVM.
type Finding struct {
	ID       string `json:"id"`
	Severity string `json:"severity"`
	Message  string `json:"message"`
}

// unstable wraps conf.Unstable for the facts' own use.
func unstable(spec string) (bool, string) { return conf.Unstable(spec) }

// label names the interface for messages: its name, or "a NIC" when the configuration matches
// by other facts (a MAC, a driver) only.
func (i Interface) label() string {
	if i.Name == "" {
		return "a NIC"
	}
	return i.Name
}
