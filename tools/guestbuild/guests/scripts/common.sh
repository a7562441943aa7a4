# Shared stages of the h2kvm test-guest recipes. Sourced by a recipe script; part of every
# recipe's hash, so a change here rebuilds every cached guest.
#
# Inputs (environment, set by tools/guestbuild/guests): GB_NAME GB_RELEASE GB_MIRROR GB_PACKAGES
# (comma separated) GB_WORK (scratch folder) GB_OUT (output folder, becomes the cache entry)
# GB_MAC GB_HOSTNAME GB_DISK_MIB GB_SWAP_MIB GB_ROOT_PASSWORD GB_MARKER GB_MOTD.
set -euo pipefail

ROOT="$GB_WORK/root"
BYPATH="/dev/disk/by-path/pci-0000:03:00.0-scsi-0:0:0:0"

log() { printf '%s guestbuild[%s]: %s\n' "$(date +%T)" "$GB_NAME" "$*" >&2; }

# stage_debootstrap: a minimal Debian root with the recipe's packages, without the .deb cache.
stage_debootstrap() {
	log "debootstrap $GB_RELEASE from $GB_MIRROR"
	debootstrap --variant=minbase --include="$GB_PACKAGES" "$GB_RELEASE" "$ROOT" "$GB_MIRROR" \
		>"$GB_WORK/debootstrap.log" 2>&1 || {
		tail -30 "$GB_WORK/debootstrap.log" >&2
		return 1
	}
	# debootstrap may leave /proc mounted when a package script fails half way.
	umount "$ROOT/proc" 2>/dev/null || true
	rm -rf "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/lib/apt/lists/* \
		"$ROOT"/usr/share/doc/* "$ROOT"/usr/share/man/* "$ROOT"/usr/share/locale/*
	# Drivers no server guest of these tests loads; keeps the tar-in under TCG short. Storage,
	# network, virtio, VMware and filesystem modules all stay.
	local k
	for k in "$ROOT"/usr/lib/modules/*; do
		rm -rf "$k"/kernel/sound "$k"/kernel/drivers/gpu "$k"/kernel/drivers/media \
			"$k"/kernel/drivers/net/wireless "$k"/kernel/drivers/infiniband \
			"$k"/kernel/drivers/staging "$k"/kernel/drivers/bluetooth "$k"/kernel/net/wireless \
			"$k"/kernel/net/mac80211 "$k"/kernel/net/bluetooth "$k"/kernel/drivers/iio
		chroot "$ROOT" depmod "$(basename "$k")"
	done
}

# in_root runs a command inside the root with /proc mounted.
in_root() {
	mount -t proc proc "$ROOT/proc"
	local rc=0
	chroot "$ROOT" "$@" || rc=$?
	umount "$ROOT/proc"
	return $rc
}

# configure_common: identity, root password, SSH key, sshd, VMware-style network naming.
configure_common() {
	log "configure identity, ssh, network naming"
	echo "$GB_HOSTNAME" >"$ROOT/etc/hostname"
	printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\tlocalhost ip6-localhost ip6-loopback\n' \
		"$GB_HOSTNAME" >"$ROOT/etc/hosts"
	echo "root:$GB_ROOT_PASSWORD" | chroot "$ROOT" chpasswd
	ssh-keygen -q -t ed25519 -N '' -C "h2kvm-test-$GB_NAME" -f "$GB_OUT/id_ed25519"
	install -d -m 0700 "$ROOT/root/.ssh"
	install -m 0600 "$GB_OUT/id_ed25519.pub" "$ROOT/root/.ssh/authorized_keys"
	mkdir -p "$ROOT/etc/ssh/sshd_config.d"
	printf 'PermitRootLogin prohibit-password\nUseDNS no\n' >"$ROOT/etc/ssh/sshd_config.d/h2kvm.conf"
	# The VMware NIC name is pinned to the VMware MAC, as vSphere templates commonly do.
	mkdir -p "$ROOT/etc/systemd/network"
	printf '[Match]\nMACAddress=%s\n\n[Link]\nName=ens192\n' "$GB_MAC" \
		>"$ROOT/etc/systemd/network/10-vmware.link"
	: >"$ROOT/etc/machine-id"
}

# configure_grub_vmware: root=/dev/sdXN on the kernel command line, serial console on ttyS0.
configure_grub_vmware() {
	local f="$ROOT/etc/default/grub"
	sed -i -e 's/^GRUB_TIMEOUT=.*/GRUB_TIMEOUT=1/' \
		-e 's/^GRUB_CMDLINE_LINUX_DEFAULT=.*/GRUB_CMDLINE_LINUX_DEFAULT=""/' \
		-e 's/^GRUB_CMDLINE_LINUX=.*/GRUB_CMDLINE_LINUX="console=tty0 console=ttyS0,115200n8"/' "$f"
	cat >>"$f" <<'EOT'
GRUB_DISABLE_LINUX_UUID=true
GRUB_DISABLE_LINUX_PARTUUID=true
GRUB_TERMINAL="console serial"
GRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200"
EOT
}

# configure_initramfs_vmware: an initramfs that only knows VMware and legacy storage.
configure_initramfs_vmware() {
	log "initramfs-tools MODULES=list without virtio"
	sed -i 's/^MODULES=.*/MODULES=list/' "$ROOT/etc/initramfs-tools/initramfs.conf"
	printf '%s\n' vmw_pvscsi mptspi sd_mod ata_piix ahci ext4 >>"$ROOT/etc/initramfs-tools/modules"
	echo "RESUME=none" >"$ROOT/etc/initramfs-tools/conf.d/resume"
	in_root update-initramfs -u -k all >"$GB_WORK/initramfs.log" 2>&1 || {
		tail -20 "$GB_WORK/initramfs.log" >&2
		return 1
	}
	if lsinitramfs "$ROOT"/boot/initrd.img-* | grep -q 'virtio'; then
		log "initramfs unexpectedly holds virtio modules"
		return 1
	fi
}

# pack_root: the root as an uncompressed tar with numeric owners (the appliance's passwd differs).
pack_root() {
	log "pack root"
	tar -C "$ROOT" --numeric-owner --xattrs -cf "$GB_WORK/root.tar" \
		--exclude=./proc/* --exclude=./sys/* --exclude=./dev/* --exclude=./run/* .
}

# make_vmdk_chain: base NAME.vmdk (monolithicSparse) and delta NAME-000001.vmdk, with the
# snapshot marker written into the delta only.
make_vmdk_chain() {
	local raw="$1" rootdev="$2"
	log "convert to VMDK chain"
	qemu-img convert -f raw -O vmdk -o subformat=monolithicSparse,adapter_type=lsilogic \
		"$raw" "$GB_OUT/$GB_NAME.vmdk"
	rm -f "$raw"
	(cd "$GB_OUT" && qemu-img create -q -f vmdk -b "$GB_NAME.vmdk" -F vmdk "$GB_NAME-000001.vmdk")
	log "write snapshot marker into the delta"
	guestfish --rw --format=vmdk -a "$GB_OUT/$GB_NAME-000001.vmdk" <<EOT
run
mount $rootdev /
write /etc/h2kvm-snapshot "$GB_MARKER\n"
write /etc/motd "$GB_MOTD\n"
umount-all
EOT
}
