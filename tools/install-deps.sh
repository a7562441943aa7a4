#!/usr/bin/env bash
# Installs the Debian 12 packages h2kvm builds, tests and runs with. Idempotent: packages
# already present are skipped, and nothing is fetched when all are there.
set -euo pipefail

PKGS=(
  # build
  gcc make pkg-config
  # libguestfs and its Go binding (guest inspection and fixing)
  libguestfs-tools libguestfs-dev golang-guestfs-dev linux-image-amd64 libhivex-bin
  # libnbd for the nbd:// source and for clients used in tests (nbdinfo, nbdcopy)
  libnbd-dev libnbd-bin nbdkit
  # disk tools and emulators
  qemu-utils qemu-system-x86 ovmf
  # FUSE front end
  fuse3
  # boot tests and the domain XML validator
  libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients libvirt-daemon-system libxml2-utils
  # test guest builder and the peer converter
  debootstrap virt-v2v dosfstools initramfs-tools-core
  # benchmarks and tests (sfdisk and mke2fs build test disks without libguestfs; pgrep in CI)
  curl bc openssh-client openssh-server netcat-openbsd fdisk e2fsprogs procps
  # certtool for the x509 certificates of serve --tls-cert/--tls-ca (tests make theirs in Go)
  gnutls-bin
)

# One dpkg-query for all packages keeps the already-installed case fast (make runs this each time).
declare -A installed=()
while read -r name status; do
  [ "$status" = "installed" ] && installed[$name]=1
done < <(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "${PKGS[@]}" 2>/dev/null || true)
missing=()
for p in "${PKGS[@]}"; do
  [ -n "${installed[$p]:-}" ] || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
else
  SUDO=
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
