#!/bin/sh
# TEST-ONLY validation, not product code: the smallest by-hand fix that makes a test guest of
# tools/guestbuild boot on QEMU with virtio, to prove that its recipe is broken only in the
# intended ways. The real fixers live in fixers/linux. Runs inside the guest (guestfish
# "command"); $1 is the MAC of the KVM NIC.
set -eu
mac="$1"

# fstab: by-path and sdX names -> UUID= (the appliance's disk is /dev/sda, like the guest's).
tmp=/etc/fstab.h2kvm-manualfix
: >"$tmp"
while read -r dev rest; do
	case "$dev" in
	/dev/disk/by-path/*-part[0-9]*) part="/dev/sda${dev##*-part}" ;;
	/dev/sd[a-z][0-9]*) part="/dev/sda${dev#/dev/sd[a-z]}" ;;
	*) part="" ;;
	esac
	if [ -n "$part" ]; then
		echo "UUID=$(blkid -s UUID -o value "$part") $rest" >>"$tmp"
	else
		echo "$dev $rest" >>"$tmp"
	fi
done </etc/fstab
mv "$tmp" /etc/fstab

# GRUB: root=UUID=, serial console.
sed -i '/^GRUB_DISABLE_LINUX_UUID=/d' /etc/default/grub
grep -q 'console=ttyS0' /etc/default/grub ||
	sed -i 's/^GRUB_CMDLINE_LINUX="/GRUB_CMDLINE_LINUX="console=ttyS0,115200n8 /' /etc/default/grub

# initramfs: virtio storage.
printf '%s\n' virtio_pci virtio_blk virtio_scsi virtio_net >>/etc/initramfs-tools/modules

# network: re-point the VMware MAC matches at the KVM NIC.
for f in /etc/systemd/network/*.link /etc/netplan/*.yaml; do
	[ -f "$f" ] || continue
	sed -i -e "s/^MACAddress=.*/MACAddress=$mac/" -e "s/macaddress: .*/macaddress: \"$mac\"/" "$f"
done

update-initramfs -u -k all
update-grub
