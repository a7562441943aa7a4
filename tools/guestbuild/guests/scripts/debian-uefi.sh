# Recipe "debian-uefi": Debian on UEFI/GPT the VMware way. sda1 ESP (vfat, /boot/efi), sda2 ext4
# root; fstab by by-path names; GRUB (grub-efi-amd64, also at the removable path so firmware
# with empty NVRAM finds it) with root=/dev/sda2; initramfs-tools MODULES=list without virtio;
# netplan (networkd) matching the VMware MAC and set-name ens192. Sourced after common.sh.

configure_uefi() {
	configure_common
	# netplan names the NIC itself; a second .link file would only blur what the fixer must find.
	rm -f "$ROOT/etc/systemd/network/10-vmware.link"
	configure_grub_vmware
	cat >"$ROOT/etc/fstab" <<EOT
# <file system> <mount point> <type> <options> <dump> <pass>
$BYPATH-part2 / ext4 errors=remount-ro 0 1
$BYPATH-part1 /boot/efi vfat umask=0077 0 1
EOT
	mkdir -p "$ROOT/boot/efi" "$ROOT/etc/netplan"
	cat >"$ROOT/etc/netplan/01-vmware.yaml" <<EOT
network:
  version: 2
  renderer: networkd
  ethernets:
    ens192:
      match:
        macaddress: "$GB_MAC"
      set-name: ens192
      dhcp4: true
EOT
	chmod 0600 "$ROOT/etc/netplan/01-vmware.yaml"
	in_root systemctl enable systemd-networkd.service >/dev/null 2>&1
	configure_initramfs_vmware
}

disk_uefi() {
	local raw="$GB_WORK/disk.raw"
	log "partition (GPT), mkfs, tar-in, grub-install (x86_64-efi), update-grub (appliance)"
	truncate -s "${GB_DISK_MIB}M" "$raw"
	guestfish --rw --format=raw -a "$raw" <<EOT
run
part-init /dev/sda gpt
part-add /dev/sda p 2048 526335
part-add /dev/sda p 526336 -34
part-set-gpt-type /dev/sda 1 C12A7328-F81F-11D2-BA4B-00A0C93EC93B
part-set-name /dev/sda 1 EFI
mkfs vfat /dev/sda1
mkfs ext4 /dev/sda2
mount /dev/sda2 /
tar-in $GB_WORK/root.tar / xattrs:true
mkdir-p /boot/efi
mount /dev/sda1 /boot/efi
command "grub-install --target=x86_64-efi --efi-directory=/boot/efi --bootloader-id=debian --no-nvram"
command "grub-install --target=x86_64-efi --efi-directory=/boot/efi --removable --no-nvram"
command "update-grub"
sh "grep -q 'root=/dev/sda2 ' /boot/grub/grub.cfg"
is-file /boot/efi/EFI/BOOT/BOOTX64.EFI
sync
umount-all
EOT
	make_vmdk_chain "$raw" /dev/sda2
}

case "${GB_STAGES:-all}" in
all)
	stage_debootstrap
	configure_uefi
	pack_root
	disk_uefi
	;;
*)
	for s in $GB_STAGES; do "$s"; done
	;;
esac
