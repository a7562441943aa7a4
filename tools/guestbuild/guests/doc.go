// Package guests builds VMware-style Linux test guests that really fail to boot on KVM/QEMU
// with virtio until they are fixed, and caches them by recipe hash.
//
// A recipe (see Lookup, Names) is a Debian release, a package list, a disk layout and a bash
// script (scripts/common.sh plus one script per recipe, embedded). A build runs debootstrap
// (minbase) on the host, configures the root in a chroot (VMware naming: /etc/fstab by
// /dev/disk/by-path, GRUB root=/dev/sdXN, an initramfs without virtio, a NIC name pinned to a
// VMware MAC), then partitions, formats, fills and makes it bootable inside the libguestfs
// appliance (LIBGUESTFS_BACKEND=direct, force_tcg unless the caller's environment says
// otherwise), and finally writes a VMware-style chain: NAME.vmdk (monolithicSparse) and the
// snapshot delta NAME-000001.vmdk whose parent is NAME.vmdk. The delta alone carries
// Facts.MarkerPath and a changed /etc/motd, so a reader that ignores the top link is caught.
//
// Cache contract: an entry is CACHE/NAME-HASH16 holding the chain, id_ed25519(.pub),
// build.log and manifest.json (see Manifest). The hash covers the recipe's JSON form and the
// scripts, not the mirror. Builds run in CACHE/.build-NAME-* and are published with one rename;
// a lock file CACHE/.NAME.lock serialises concurrent builders of one guest, and the loser of
// the race finds the winner's entry. Entries are read-only by convention: boot or fix them
// through snapshot=on or an overlay, never in place. Old entries are not pruned.
//
// Recipes: debian-bios (MBR, initramfs-tools MODULES=list, ifupdown, a .link file pinning the
// NIC name to the VMware MAC), debian-uefi (GPT + ESP, netplan matching the MAC) and debian-lvm
// (MBR, /boot on sda1, root and swap LVs in VG vgsys named by /dev/mapper in fstab, dracut
// host-only with omit_drivers for virtio, generated inside the appliance and checked with
// lsinitrd there; systemd-networkd matching the MAC). debootstrap follows only the first
// alternative of a dependency, so debian-lvm installs dracut and then the kernel with apt
// after debootstrap (INITRD=No, the real image is built in the appliance).
//
// Builds need root (debootstrap, chroot, mount), network access to the Debian mirror and
// several minutes under TCG; tests build once and reuse the entry.
package guests
