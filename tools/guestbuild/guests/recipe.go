package guests

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
)

// Firmware is how a guest boots.
type Firmware string

// Firmware kinds.
const (
	BIOS Firmware = "bios"
	UEFI Firmware = "uefi"
)

//go:embed scripts/*.sh
var scripts embed.FS

// commonScript holds the stages every recipe script sources first.
const commonScript = "scripts/common.sh"

// recipeFormat is bumped when the builder's Go side changes what ends up in a cache entry
// (manifest layout, chain layout), so old entries are rebuilt.
const recipeFormat = "h2kvm-guest-recipe/1"

// Recipe is everything that decides the bytes of a built guest. Its JSON form, the scripts it
// runs and recipeFormat make up the recipe hash; the mirror is deliberately left out so that
// hosts with different (equivalent) mirrors share cache entries.
type Recipe struct {
	Name         string   `json:"name"`
	Release      string   `json:"release"`
	Packages     []string `json:"packages"`
	Firmware     Firmware `json:"firmware"`
	DiskMiB      int      `json:"disk_mib"`
	SwapMiB      int      `json:"swap_mib"`
	MAC          string   `json:"mac"`
	Hostname     string   `json:"hostname"`
	RootPassword string   `json:"root_password"`
	// Script is the recipe's stage script under scripts/, sourced after common.sh.
	Script string `json:"script"`
	// Expect holds the facts the recipe plants; KernelVersions is filled in at build time.
	Expect Facts `json:"expect"`
}

// Facts are what a test may assert about a built guest: how it is broken for KVM and what marks
// the top of its snapshot chain.
type Facts struct {
	// RootFstab and SwapFstab are the device names /etc/fstab uses.
	RootFstab string `json:"root_fstab"`
	SwapFstab string `json:"swap_fstab,omitempty"`
	// BootMount ("/boot", "/boot/efi") and BootFstab name a separate boot filesystem, if any.
	BootMount string `json:"boot_mount,omitempty"`
	BootFstab string `json:"boot_fstab,omitempty"`
	// KernelRoot is the root= argument GRUB passes to the kernel.
	KernelRoot string `json:"kernel_root"`
	// KernelCmdline is the rest of GRUB_CMDLINE_LINUX.
	KernelCmdline string `json:"kernel_cmdline"`
	// ApplianceRoot is the root filesystem's device as libguestfs names it.
	ApplianceRoot string `json:"appliance_root"`
	// RootLVM is "VG/LV" when the root filesystem is a logical volume.
	RootLVM string `json:"root_lvm,omitempty"`
	// MAC is the VMware NIC's address; Interface is the name the guest pins to it.
	MAC       string `json:"mac"`
	Interface string `json:"interface"`
	// NetworkConfig names the tool and file that configure Interface.
	NetworkConfig string `json:"network_config"`
	LinkFile      string `json:"link_file,omitempty"`
	// Initramfs names the generator; InitramfsModules is its explicit module list (no virtio).
	// InitramfsHostOnly says the generator only packs what the build host needed (dracut's
	// hostonly="yes"), so a fixer cannot rely on it picking up new hardware by itself.
	Initramfs         string   `json:"initramfs"`
	InitramfsModules  []string `json:"initramfs_modules"`
	InitramfsHostOnly bool     `json:"initramfs_host_only,omitempty"`
	Hostname          string   `json:"hostname"`
	RootPassword      string   `json:"root_password"`
	// KernelVersions are the kernels installed in /boot, read from the built root.
	KernelVersions []string `json:"kernel_versions"`
	// MarkerPath holds Marker in the top link of the chain only; MOTD likewise replaces
	// /etc/motd there. The base link has no marker and Debian's stock motd.
	MarkerPath string `json:"marker_path"`
	Marker     string `json:"marker"`
	MOTD       string `json:"motd"`
}

const byPath = "/dev/disk/by-path/pci-0000:03:00.0-scsi-0:0:0:0"

// recipes is the table of known guests, in priority order.
var recipes = []Recipe{
	{
		Name:    "debian-bios",
		Release: "bookworm",
		Packages: []string{"linux-image-amd64", "grub-pc", "initramfs-tools", "ifupdown",
			"isc-dhcp-client", "openssh-server", "open-vm-tools", "systemd-sysv", "udev", "kmod"},
		Firmware:     BIOS,
		DiskMiB:      3584,
		SwapMiB:      512,
		MAC:          "00:50:56:a1:b2:01",
		Hostname:     "h2kvm-debian-bios",
		RootPassword: "h2kvm",
		Script:       "scripts/debian-bios.sh",
		Expect: Facts{
			RootFstab:        byPath + "-part1",
			SwapFstab:        byPath + "-part2",
			KernelRoot:       "/dev/sda1",
			KernelCmdline:    "console=tty0 console=ttyS0,115200n8",
			ApplianceRoot:    "/dev/sda1",
			MAC:              "00:50:56:a1:b2:01",
			Interface:        "ens192",
			NetworkConfig:    "ifupdown:/etc/network/interfaces",
			LinkFile:         "/etc/systemd/network/10-vmware.link",
			Initramfs:        "initramfs-tools",
			InitramfsModules: []string{"vmw_pvscsi", "mptspi", "sd_mod", "ata_piix", "ahci", "ext4"},
			Hostname:         "h2kvm-debian-bios",
			RootPassword:     "h2kvm",
			MarkerPath:       "/etc/h2kvm-snapshot",
			Marker:           "snapshot-000001 of debian-bios",
			MOTD:             "h2kvm test guest debian-bios (snapshot 000001)",
		},
	},
	{
		Name:    "debian-uefi",
		Release: "bookworm",
		Packages: []string{"linux-image-amd64", "grub-efi-amd64", "initramfs-tools", "netplan.io",
			"openssh-server", "open-vm-tools", "systemd-sysv", "udev", "kmod"},
		Firmware:     UEFI,
		DiskMiB:      3072,
		MAC:          "00:50:56:a1:b2:03",
		Hostname:     "h2kvm-debian-uefi",
		RootPassword: "h2kvm",
		Script:       "scripts/debian-uefi.sh",
		Expect: Facts{
			RootFstab:        byPath + "-part2",
			BootMount:        "/boot/efi",
			BootFstab:        byPath + "-part1",
			KernelRoot:       "/dev/sda2",
			KernelCmdline:    "console=tty0 console=ttyS0,115200n8",
			ApplianceRoot:    "/dev/sda2",
			MAC:              "00:50:56:a1:b2:03",
			Interface:        "ens192",
			NetworkConfig:    "netplan:/etc/netplan/01-vmware.yaml",
			Initramfs:        "initramfs-tools",
			InitramfsModules: []string{"vmw_pvscsi", "mptspi", "sd_mod", "ata_piix", "ahci", "ext4"},
			Hostname:         "h2kvm-debian-uefi",
			RootPassword:     "h2kvm",
			MarkerPath:       "/etc/h2kvm-snapshot",
			Marker:           "snapshot-000001 of debian-uefi",
			MOTD:             "h2kvm test guest debian-uefi (snapshot 000001)",
		},
	},
	{
		Name: "debian-lvm",
		// dracut and the kernel are installed after debootstrap (see scripts/debian-lvm.sh).
		Packages: []string{"linux-image-amd64", "grub-pc", "dracut", "lvm2", "openssh-server",
			"open-vm-tools", "systemd-sysv", "udev", "kmod"},
		Release:      "bookworm",
		Firmware:     BIOS,
		DiskMiB:      3584,
		SwapMiB:      512,
		MAC:          "00:50:56:a1:b2:05",
		Hostname:     "h2kvm-debian-lvm",
		RootPassword: "h2kvm",
		Script:       "scripts/debian-lvm.sh",
		Expect: Facts{
			RootFstab:     "/dev/mapper/vgsys-root",
			SwapFstab:     "/dev/mapper/vgsys-swap",
			BootMount:     "/boot",
			BootFstab:     "/dev/sda1",
			KernelRoot:    "/dev/mapper/vgsys-root",
			KernelCmdline: "console=tty0 console=ttyS0,115200n8",
			ApplianceRoot: "/dev/vgsys/root",
			RootLVM:       "vgsys/root",
			MAC:           "00:50:56:a1:b2:05",
			// No name is pinned: the .network file matches the MAC, the kernel names the NIC.
			NetworkConfig:     "networkd:/etc/systemd/network/10-vmware.network",
			Initramfs:         "dracut",
			InitramfsHostOnly: true,
			InitramfsModules:  []string{"vmw_pvscsi", "mptspi", "mptsas", "sd_mod", "ata_piix", "ahci", "dm_mod", "ext4"},
			Hostname:          "h2kvm-debian-lvm",
			RootPassword:      "h2kvm",
			MarkerPath:        "/etc/h2kvm-snapshot",
			Marker:            "snapshot-000001 of debian-lvm",
			MOTD:              "h2kvm test guest debian-lvm (snapshot 000001)",
		},
	},
}

// Names lists the known guests in priority order.
func Names() []string {
	out := make([]string, len(recipes))
	for i, r := range recipes {
		out[i] = r.Name
	}
	return out
}

// Lookup returns the recipe called name.
func Lookup(name string) (Recipe, error) {
	for _, r := range recipes {
		if r.Name == name {
			r.Packages = append([]string(nil), r.Packages...)
			return r, nil
		}
	}
	return Recipe{}, fmt.Errorf("guestbuild: %q (known: %v): %w", name, Names(), ErrUnknownGuest)
}

// Hash is the hex SHA-256 of the recipe: its format version, its JSON form (release, packages,
// layout, expected facts) and the text of the scripts it runs.
func (r Recipe) Hash() (string, error) {
	h := sha256.New()
	h.Write([]byte(recipeFormat + "\n"))
	sorted := r
	sorted.Packages = append([]string(nil), r.Packages...)
	sort.Strings(sorted.Packages)
	js, err := json.Marshal(sorted)
	if err != nil {
		return "", fmt.Errorf("guestbuild: %s: encode recipe: %w", r.Name, err)
	}
	h.Write(js)
	for _, name := range []string{commonScript, r.Script} {
		b, err := scripts.ReadFile(name)
		if err != nil {
			return "", fmt.Errorf("guestbuild: %s: script %s: %w", r.Name, name, err)
		}
		fmt.Fprintf(h, "\n--- %s %d\n", name, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
