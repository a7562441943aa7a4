# Recipe "debian-lvm": Debian on BIOS/MBR with LVM and dracut, the VMware way. sda1 ext4 /boot,
# sda2 an LVM PV holding VG vgsys with LVs root (ext4) and swap; fstab mixes /dev/sda1 (for
# /boot) with /dev/mapper names; GRUB root=/dev/mapper/vgsys-root; dracut host-only with virtio
# omitted (generated inside the appliance, so host-only detection sees the LVM root); a
# systemd-networkd .network matching the VMware MAC with DHCP. Sourced after common.sh.

VG=vgsys
# Installed after debootstrap: debootstrap resolves only the first alternative of a dependency,
# so the kernel's "initramfs-tools | linux-initramfs-tool" would drag in initramfs-tools, which
# conflicts with dracut.
LATE_PACKAGES="dracut linux-image-amd64"

# prune_modules drops the drivers no server guest of these tests loads (as stage_debootstrap
# does for kernels that debootstrap installs).
prune_modules() {
	local k
	for k in "$ROOT"/usr/lib/modules/*; do
		rm -rf "$k"/kernel/sound "$k"/kernel/drivers/gpu "$k"/kernel/drivers/media \
			"$k"/kernel/drivers/net/wireless "$k"/kernel/drivers/infiniband \
			"$k"/kernel/drivers/staging "$k"/kernel/drivers/bluetooth "$k"/kernel/net/wireless \
			"$k"/kernel/net/mac80211 "$k"/kernel/net/bluetooth "$k"/kernel/drivers/iio
		chroot "$ROOT" depmod "$(basename "$k")"
	done
}

stage_debootstrap_dracut() {
	local p early=()
	IFS=, read -ra all <<<"$GB_PACKAGES"
	for p in "${all[@]}"; do
		case " $LATE_PACKAGES " in *" $p "*) ;; *) early+=("$p") ;; esac
	done
	# No kernel yet: stage_debootstrap's module pruning loop must see an empty glob.
	shopt -s nullglob
	GB_PACKAGES=$(IFS=,; echo "${early[*]}") stage_debootstrap
	shopt -u nullglob
	stage_late_packages
}

# stage_late_packages installs LATE_PACKAGES in the root with apt, one at a time.
stage_late_packages() {
	local p
	log "apt-get install $LATE_PACKAGES (dracut first, then the kernel)"
	(
		in_root apt-get update || exit 1
		for p in $LATE_PACKAGES; do
			in_root env INITRD=No apt-get install -y --no-install-recommends "$p" || exit 1
		done
	) >"$GB_WORK/apt.log" 2>&1 || {
		tail -30 "$GB_WORK/apt.log" >&2
		return 1
	}
	if chroot "$ROOT" dpkg -s initramfs-tools >/dev/null 2>&1; then
		log "initramfs-tools got installed next to dracut"
		return 1
	fi
	rm -rf "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/lib/apt/lists/* \
		"$ROOT"/usr/share/doc/* "$ROOT"/usr/share/man/* "$ROOT"/usr/share/locale/*
	prune_modules
	# INITRD=No kept dracut's kernel hook from building a generic image; the real one is made
	# in the appliance. Drop any that a hook made anyway.
	rm -f "$ROOT"/boot/initrd.img-*
}

configure_lvm() {
	configure_common
	# The .network file matches the MAC itself; a .link file would only blur what the fixer
	# must find.
	rm -f "$ROOT/etc/systemd/network/10-vmware.link"
	configure_grub_vmware
	cat >"$ROOT/etc/fstab" <<EOT
# <file system> <mount point> <type> <options> <dump> <pass>
/dev/mapper/$VG-root / ext4 errors=remount-ro 0 1
/dev/sda1 /boot ext4 defaults 0 2
/dev/mapper/$VG-swap none swap sw 0 0
EOT
	cat >"$ROOT/etc/systemd/network/10-vmware.network" <<EOT
[Match]
MACAddress=$GB_MAC

[Network]
DHCP=yes
EOT
	in_root systemctl enable systemd-networkd.service >/dev/null 2>&1
	mkdir -p "$ROOT/etc/dracut.conf.d"
	cat >"$ROOT/etc/dracut.conf.d/10-vmware.conf" <<'EOT'
# Built on VMware: only what this host needs, never paravirtual drivers of other hypervisors.
hostonly="yes"
omit_drivers+=" virtio_blk virtio_scsi virtio_pci virtio_net virtio_console "
add_drivers+=" vmw_pvscsi mptspi mptsas sd_mod ata_piix ahci dm_mod ext4 "
add_dracutmodules+=" lvm "
EOT
}

disk_lvm() {
	local raw="$GB_WORK/disk.raw"
	local kvers k
	kvers=$(cd "$ROOT/usr/lib/modules" && echo *)
	log "partition, LVM, mkfs, tar-in, dracut host-only, grub-install, update-grub (appliance)"
	truncate -s "${GB_DISK_MIB}M" "$raw"
	{
		cat <<EOT
run
part-init /dev/sda mbr
part-add /dev/sda p 2048 1050623
part-add /dev/sda p 1050624 -1
part-set-mbr-id /dev/sda 2 0x8e
part-set-bootable /dev/sda 1 true
pvcreate /dev/sda2
vgcreate $VG /dev/sda2
lvcreate swap $VG $GB_SWAP_MIB
lvcreate-free root $VG 100
mkfs ext4 /dev/sda1
mkfs ext4 /dev/$VG/root
mkswap /dev/$VG/swap
mount /dev/$VG/root /
mkdir-p /boot
mount /dev/sda1 /boot
tar-in $GB_WORK/root.tar / xattrs:true
EOT
		for k in $kvers; do
			echo "command \"dracut -f --kver $k /boot/initrd.img-$k\""
			# Host-only in the appliance sees its virtio hardware (it packs virtio.ko,
			# virtio_ring.ko and the like), but the omitted disk, PCI and NIC drivers must not
			# be there; LVM must (or the guest would not boot on VMware either). The listing of
			# the interesting files goes to the build log.
			echo "sh \"lsinitrd /boot/initrd.img-$k | grep -E 'virtio|bin/lvm|vmw_pvscsi|dm-mod|hostonly' || true\""
			echo "sh \"if lsinitrd /boot/initrd.img-$k | grep -E '/(virtio_blk|virtio_scsi|virtio_pci|virtio_net)[.]ko'; then exit 1; fi; lsinitrd /boot/initrd.img-$k | grep -q bin/lvm && lsinitrd /boot/initrd.img-$k | grep -q hostonly-files\""
		done
		cat <<EOT
command "grub-install --target=i386-pc /dev/sda"
command "update-grub"
sh "grep -q 'root=/dev/mapper/$VG-root ' /boot/grub/grub.cfg"
sync
umount-all
EOT
	} | guestfish --rw --format=raw -a "$raw"
	make_vmdk_chain "$raw" /dev/$VG/root
}

case "${GB_STAGES:-all}" in
all)
	stage_debootstrap_dracut
	configure_lvm
	pack_root
	disk_lvm
	;;
*)
	for s in $GB_STAGES; do "$s"; done
	;;
esac
