#!/usr/bin/env bash
# make demo: build (or reuse from the cache) a VMware-style Debian guest whose disk is a VMDK
# snapshot chain, migrate it with h2kvm, and boot the
# result under libvirtd as the proof.
#
#   H2KVM_DEMO_GUEST   guest recipe (default debian-bios; see `go run ./tools/guestbuild --list`)
#   H2KVM_DEMO_OUT     output folder (default /var/tmp/h2kvm-demo)
#   H2KVM_TEST_CACHE   guest cache (default /var/cache/h2kvm-test)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
export PATH="/usr/local/go/bin:$PATH:/usr/sbin:/sbin"
guest=${H2KVM_DEMO_GUEST:-debian-bios}
out=${H2KVM_DEMO_OUT:-/var/tmp/h2kvm-demo}

# libvirtd for the boot test (no systemd on these machines).
pgrep -x virtlogd >/dev/null || virtlogd -d
pgrep -x libvirtd >/dev/null || libvirtd -d
for _ in $(seq 60); do [ -S /run/libvirt/libvirt-sock ] && break; sleep 0.5; done

echo "== 1. The VMware-style guest (built once, then cached by recipe hash)"
info=$(cd "$top" && go run ./tools/guestbuild --guest "$guest" --quiet)
echo "$info"
chain=$(echo "$info" | awk '$1 == "top" {print $2}')

echo
echo "== 2. Its chain as h2kvm sees it"
"$top/bin/h2kvm" info "$chain"

echo
echo "== 3. h2kvm migrate (embedded daemon, no intermediate copy, boot test under libvirtd)"
rm -rf "$out"
"$top/bin/h2kvm" migrate "$chain" --output "$out" --boot-test

echo
echo "== 4. The proof, from $out/report.md"
sed -n '/^## Boot test/,$p' "$out/report.md" | head -40
