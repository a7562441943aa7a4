#!/bin/sh
# TEST-ONLY validation, not product code: the smallest by-hand fix that makes the debian-bios
# recipe boot on QEMU with virtio, to prove the recipe is broken only in the intended ways.
# The real fixers live in fixers/linux. Runs inside the guest (guestfish "command"), with the
# new NIC's MAC as $1.
set -eu
mac="$1"
root=$(blkid -s UUID -o value /dev/sda1)
swap=$(blkid -s UUID -o value /dev/sda2)
printf 'UUID=%s / ext4 errors=remount-ro 0 1\nUUID=%s none swap sw 0 0\n' "$root" "$swap" >/etc/fstab
sed -i '/^GRUB_DISABLE_LINUX_UUID=/d' /etc/default/grub
grep -q 'console=ttyS0' /etc/default/grub ||
	sed -i 's/^GRUB_CMDLINE_LINUX="/GRUB_CMDLINE_LINUX="console=ttyS0,115200n8 /' /etc/default/grub
printf '%s\n' virtio_pci virtio_blk virtio_scsi virtio_net >>/etc/initramfs-tools/modules
sed -i "s/^MACAddress=.*/MACAddress=$mac/" /etc/systemd/network/10-vmware.link
update-initramfs -u -k all
update-grub
