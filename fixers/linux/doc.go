// Package linux inspects Linux guests through libguestfs, plans the changes that make a
// VMware-built guest boot and reach the network on KVM (virtio-blk or virtio-scsi disk,
// virtio-net NIC), and applies them offline.
//
// The three steps, each usable alone (h2kvm inspect, h2kvm plan, the FIX stage of migrate):
//
//	facts, err := linux.Inspect(ctx, session.G())     // read-only
//	plan, err := linux.Plan(facts, linux.PlanOptions{}) // pure: no guest access
//	report, err := linux.Apply(ctx, session.G(), plan)  // writes the guest
//
// New returns the same steps as a fixers.Fixer (facts and plan as JSON of Facts and FixPlan),
// which is how the pipeline uses them.
//
// Inspect uses libguestfs's inspect_os to find the root filesystem but mounts the guest's
// filesystems itself: libguestfs (and virt-v2v 2.2) fail on /etc/fstab names like
// /dev/disk/by-path/..., so each fstab entry is mapped to an appliance device from blkid facts
// (UUID, LABEL, PARTUUID, PARTLABEL, LVM names, bus-position names by disk index and partition
// number, with the filesystem type as a check). Inspect mounts read-only and lists initramfs
// images with the guest's own tool (lsinitramfs, lsinitrd, lsinitcpio) whose scratch files go to
// the appliance's /dev, so inspecting never writes the guest's disks.
//
// Plan refuses, before anything is changed, a disk without an OS (ErrNoOS), a non-Linux or
// unknown Linux guest or one whose tools the x86_64 appliance cannot run (ErrUnsupported), and
// a guest none of whose kernels has virtio PCI and block drivers (ErrNotBootable). Anything
// else it cannot fix is a warning in the plan.
//
// Apply runs the fixes in plan order (see the Fix* constants): stable fstab/crypttab names;
// NIC naming re-pointed from VMware MACs, drivers and PCI paths to the virtio driver (unless the
// domain keeps the MAC, PlanOptions.KeepMACs), never touching addresses; VMware-only module
// loads commented out; VMware tools purged with dpkg/rpm inside the guest (units removed
// otherwise); virtio drivers added to the initramfs configuration and every bootable kernel's
// initramfs rebuilt with the guest's generator; GRUB back to root=UUID= (and a serial console
// unless PlanOptions.NoSerialConsole), device.map removed, grub.cfg rebuilt with the guest's
// update-grub / grub(2)-mkconfig; /.autorelabel for SELinux. Guest commands run through
// libguestfs's command, which bind-mounts /dev, /proc and /sys into the guest root.
//
// Every fix is idempotent and recorded (fixers.Change with the file before and after):
// applying a plan twice, or planning a fixed guest, yields nothing to do. Regeneration steps
// run only when their inputs changed or their outputs are still wrong.
//
// Caveats: only GRUB 2 is fixed (other boot loaders get a warning); several NICs whose names
// are pinned to VMware MACs can only keep their names if the domain keeps the MACs; the netplan
// editor is line based (see package conf). dracut images are rebuilt inside the appliance: a
// host-only configuration (hostonly="yes") would only pick the appliance's hardware, so the
// virtio drivers (and dm_mod plus the lvm dracut module for a root on LVM) are named in
// DracutConfig, and omit_drivers entries that exclude virtio are removed. The test guests of
// tools/guestbuild are fixed and booted end to end (SSH): Debian BIOS with initramfs-tools and
// ifupdown, Debian UEFI with netplan, Debian BIOS on LVM with host-only dracut and
// systemd-networkd; the mkinitcpio, rpm, NetworkManager and ifcfg paths are tested at the text
// level only.
package linux
