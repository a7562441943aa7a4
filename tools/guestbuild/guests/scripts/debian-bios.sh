# Recipe "debian-bios": Debian on BIOS/MBR the VMware way. sda1 ext4 root, sda2 swap; fstab by
# by-path names; GRUB root=/dev/sda1; initramfs-tools MODULES=list without virtio; ifupdown on
# ens192 pinned to the VMware MAC. Sourced after common.sh.

configure_bios() {
	configure_common
	configure_grub_vmware
	cat >"$ROOT/etc/fstab" <<EOT
# <file system> <mount point> <type> <options> <dump> <pass>
$BYPATH-part1 / ext4 errors=remount-ro 0 1
$BYPATH-part2 none swap sw 0 0
EOT
	cat >"$ROOT/etc/network/interfaces" <<'EOT'
source /etc/network/interfaces.d/*

auto lo
iface lo inet loopback

auto ens192
iface ens192 inet dhcp
EOT
	configure_initramfs_vmware
}

disk_bios() {
	local raw="$GB_WORK/disk.raw"
	local root_end=$(((GB_DISK_MIB - GB_SWAP_MIB) * 2048 - 1))
	log "partition, mkfs, tar-in, grub-install, update-grub (appliance)"
	truncate -s "${GB_DISK_MIB}M" "$raw"
	guestfish --rw --format=raw -a "$raw" <<EOT
run
part-init /dev/sda mbr
part-add /dev/sda p 2048 $root_end
part-add /dev/sda p $((root_end + 1)) -1
part-set-mbr-id /dev/sda 2 0x82
part-set-bootable /dev/sda 1 true
mkfs ext4 /dev/sda1
mkswap /dev/sda2
mount /dev/sda1 /
tar-in $GB_WORK/root.tar / xattrs:true
command "grub-install --target=i386-pc /dev/sda"
command "update-grub"
sh "grep -q 'root=/dev/sda1 ' /boot/grub/grub.cfg"
sync
umount-all
EOT
	make_vmdk_chain "$raw" /dev/sda1
}

case "${GB_STAGES:-all}" in
all)
	stage_debootstrap
	configure_bios
	pack_root
	disk_bios
	;;
*)
	for s in $GB_STAGES; do "$s"; done
	;;
esac
