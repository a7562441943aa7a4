#!/usr/bin/env bash
# make bench: h2kvm side by side with its peers on the same files, printed as ratios.
# Nothing here asserts a time; the numbers are for people. Work files live in
# $H2KVM_BENCH_DIR (default /var/tmp/h2kvm-bench) and are reused between runs.
#
#   H2KVM_BENCH_SIZE   virtual size of the big images (default 2G)
#   H2KVM_BENCH_RUNS   runs per measurement, the best is kept (default 2)
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
BIN=$top/bin/h2kvm
W=${H2KVM_BENCH_DIR:-/var/tmp/h2kvm-bench}
SIZE=${H2KVM_BENCH_SIZE:-2G}
RUNS=${H2KVM_BENCH_RUNS:-2}
mkdir -p "$W"
cd "$W"

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  mountpoint -q "$W/mnt" 2>/dev/null && fusermount3 -u "$W/mnt" || true
}
trap cleanup EXIT

say() { printf '%s\n' "$*"; }
now() { date +%s.%N; }
# best_time CMD...: runs CMD $RUNS times, prints the best wall time in seconds.
best_time() {
  local best="" s e t
  for _ in $(seq "$RUNS"); do
    s=$(now); "$@" >/dev/null 2>&1; e=$(now)
    t=$(echo "$e - $s" | bc -l)
    if [ -z "$best" ] || [ "$(echo "$t < $best" | bc -l)" = 1 ]; then best=$t; fi
  done
  printf '%.3f' "$best"
}
ratio() { printf '%.2f' "$(echo "$1 / $2" | bc -l)"; }
mibs() { printf '%.0f' "$(echo "$1 / 1048576 / $2" | bc -l)"; }
wait_sock() { for _ in $(seq 200); do [ -S "$1" ] && return 0; sleep 0.05; done; echo "no socket $1" >&2; exit 1; }
bytes_of() { stat -c %s "$1"; }

# --- images (made once) ---------------------------------------------------------------------
if [ ! -f flat.vmdk ]; then
  say "making a $SIZE mostly allocated monolithicFlat image…"
  qemu-img create -q -f vmdk -o subformat=monolithicFlat flat.vmdk "$SIZE"
  total=$(bytes_of flat-flat.vmdk)
  # 15 of every 16 MiB hold random data: mostly allocated, not compressible.
  mb=$((total / 1048576))
  head -c $((16 * 1048576)) /dev/urandom > block16.bin
  for ((i = 0; i < mb; i += 16)); do
    dd if=block16.bin of=flat-flat.vmdk bs=1M count=15 seek=$i conv=notrunc status=none
  done
  rm -f block16.bin
fi
if [ ! -f sparse.vmdk ]; then
  say "making a monolithicSparse copy and a 10%-allocated sparse image…"
  qemu-img convert -O vmdk -o subformat=monolithicSparse flat.vmdk sparse.vmdk
  qemu-img create -q -f vmdk -o subformat=monolithicSparse thin.vmdk "$SIZE"
  total=$(bytes_of flat-flat.vmdk)
  qemu-io -f vmdk -c "write -P 0x5a 0 1M" thin.vmdk >/dev/null
  for ((off = 0; off < total; off += 10485760)); do echo "write -P 0x$(printf %02x $((off / 10485760 % 250 + 1))) $off 1M"; done \
    | sed 's/^/-c\n/' | tr '\n' '\0' | xargs -0 qemu-io -f vmdk thin.vmdk >/dev/null
fi
if [ ! -f big16.vmdk ]; then
  qemu-img create -q -f vmdk -o subformat=monolithicSparse big16.vmdk 16G
  for g in 0 4 8 12 15; do qemu-io -f vmdk -c "write -P 0x33 ${g}G 8M" big16.vmdk >/dev/null; done
fi
if [ ! -f top.vmdk ]; then
  qemu-img create -q -f vmdk -b sparse.vmdk -F vmdk top.vmdk "$SIZE"
  qemu-io -f vmdk -c "write -P 0x77 100M 64M" -c "write -P 0x78 1G 32M" top.vmdk >/dev/null
fi
vsize=$(qemu-img info --output=json flat.vmdk | sed -n 's/.*"virtual-size": \([0-9]*\).*/\1/p')

start_h2kvm() { # start_h2kvm SOCK EXPORT...
  local sock=$1; shift
  local args=()
  for e in "$@"; do args+=(--export "$e"); done
  rm -rf "$W/state"
  "$BIN" serve --state-dir "$W/state" --nbd-socket "$sock" "${args[@]}" --log-level warn &
  pids+=($!)
  wait_sock "$sock"
}
stop_last() { kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true; unset 'pids[-1]'; }

say
say "== Sequential read of a $SIZE flat image with nbdcopy to null: (best of $RUNS)"
start_h2kvm "$W/h.sock" "flat=$W/flat.vmdk,ro" "sparse=$W/sparse.vmdk,ro" "thin=$W/thin.vmdk,ro"
t_h=$(best_time nbdcopy "nbd+unix:///flat?socket=$W/h.sock" null:)
nbdkit -U "$W/k.sock" -f file "$W/flat-flat.vmdk" & pids+=($!); wait_sock "$W/k.sock"
t_k=$(best_time nbdcopy "nbd+unix://?socket=$W/k.sock" null:)
kill "${pids[-1]}"; unset 'pids[-1]'
say "h2kvm (flat):          ${t_h}s  $(mibs "$vsize" "$t_h") MiB/s"
say "nbdkit file:           ${t_k}s  $(mibs "$vsize" "$t_k") MiB/s"
say "ratio throughput h2kvm / nbdkit file = $(ratio "$t_k" "$t_h")   (target >= 1.0)"

t_hs=$(best_time nbdcopy "nbd+unix:///sparse?socket=$W/h.sock" null:)
qemu-nbd -r -f vmdk -k "$W/q.sock" -x sparse "$W/sparse.vmdk" & pids+=($!); wait_sock "$W/q.sock"
t_q=$(best_time nbdcopy "nbd+unix:///sparse?socket=$W/q.sock" null:)
kill "${pids[-1]}"; unset 'pids[-1]'
say "h2kvm (monolithicSparse): ${t_hs}s  $(mibs "$vsize" "$t_hs") MiB/s"
say "qemu-nbd -r -f vmdk:      ${t_q}s  $(mibs "$vsize" "$t_q") MiB/s"
say "ratio throughput h2kvm / qemu-nbd = $(ratio "$t_q" "$t_hs")   (target >= 1.0)"

say
say "== qemu-img convert -O qcow2 of a 10%-allocated monolithicSparse image"
t_c1=$(best_time qemu-img convert -O qcow2 "nbd+unix:///thin?socket=$W/h.sock" "$W/out1.qcow2")
t_c2=$(best_time qemu-img convert -O qcow2 -f vmdk "$W/thin.vmdk" "$W/out2.qcow2")
say "from the h2kvm export: ${t_c1}s (qcow2 $(bytes_of out1.qcow2) bytes); directly: ${t_c2}s (qcow2 $(bytes_of out2.qcow2) bytes)"
say "time ratio h2kvm / direct = $(ratio "$t_c1" "$t_c2")   (target <= 1.2)"
qemu-img compare -q out1.qcow2 out2.qcow2 && say "outputs identical (qemu-img compare)"
rm -f out1.qcow2 out2.qcow2
stop_last

say
say "== Server memory while reading a 16 GiB virtual disk"
start_h2kvm "$W/h.sock" "big=$W/big16.vmdk,ro" "flat=$W/flat.vmdk,ro"
nbdcopy "nbd+unix:///flat?socket=$W/h.sock" null:
nbdcopy "nbd+unix:///big?socket=$W/h.sock" null:
hwm=$(awk '/VmHWM/ {print $2}' "/proc/${pids[-1]}/status")
say "peak RSS of h2kvm serve after full reads of $SIZE and 16 GiB: $((hwm / 1024)) MiB   (target < 100 MiB)"
stop_last

say
say "== Remote: a $SIZE two-link chain over loopback HTTP"
go build -o "$W/benchhttp" "$top/tools/benchhttp"
"$W/benchhttp" -dir "$W" > "$W/http.url" & pids+=($!)
for _ in $(seq 100); do [ -s "$W/http.url" ] && break; sleep 0.05; done
url=$(head -1 "$W/http.url")
alloc=$(( $(qemu-img map --output=json top.vmdk | grep '"data": true' | sed 's/.*"length": \([0-9]*\).*/\1/' | paste -sd+ | bc) ))
curl -s -X POST "${url}.stats/reset"
start_h2kvm "$W/h.sock" "remote=${url}top.vmdk,ro"
s=$(now); nbdcopy "nbd+unix:///remote?socket=$W/h.sock" null:; e=$(now); t_r=$(echo "$e - $s" | bc -l)
fetched=$(curl -s "${url}.stats" | sed 's/.*"bytes":\([0-9]*\).*/\1/')
local_used=$(du -sb "$W/state" | cut -f1)
s=$(now); nbdcopy "nbd+unix:///remote?socket=$W/h.sock" null:; e=$(now); t_r2=$(echo "$e - $s" | bc -l)
fetched2=$(curl -s "${url}.stats" | sed 's/.*"bytes":\([0-9]*\).*/\1/')
stop_last
curl -s -X POST "${url}.stats/reset"
s=$(now)
for f in sparse.vmdk top.vmdk; do
  nbdkit -U "$W/c.sock" -f --filter=readahead curl "${url}$f" & pids+=($!); wait_sock "$W/c.sock"
  nbdcopy "nbd+unix://?socket=$W/c.sock" null:
  kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true; unset 'pids[-1]'
done
e=$(now); t_n=$(echo "$e - $s" | bc -l)
fetched_n=$(curl -s "${url}.stats" | sed 's/.*"bytes":\([0-9]*\).*/\1/')
say "h2kvm: ${t_r}s for the flattened chain ($vsize virtual bytes), fetched $fetched bytes; allocated $alloc"
say "nbdkit curl+readahead: ${t_n}s for the link files as raw bytes, fetched $fetched_n bytes"
say "throughput ratio (virtual bytes/s) h2kvm / nbdkit = $(ratio "$(echo "$vsize / $t_r" | bc -l)" "$(echo "$vsize / $t_n" | bc -l)")   (target >= 1.5)"
say "bytes fetched / allocated: h2kvm $(ratio "$fetched" "$alloc") (target <= 1.05), nbdkit $(ratio "$fetched_n" "$alloc")"
say "second full read through h2kvm: ${t_r2}s, fetched $((fetched2 - fetched)) more bytes"
say "local disk used / virtual size after a full read (default cache limit): $(ratio "$local_used" "$vsize")"

say
say "== FUSE vs NBD on the same export"
mkdir -p "$W/mnt"
rm -rf "$W/state"
"$BIN" serve --state-dir "$W/state" --nbd-socket "$W/h.sock" --mount "$W/mnt" --export "flat=$W/flat.vmdk,ro" --log-level warn & pids+=($!)
wait_sock "$W/h.sock"
for _ in $(seq 100); do [ -f "$W/mnt/flat/disk.raw" ] && break; sleep 0.05; done
t_f=$(best_time dd if="$W/mnt/flat/disk.raw" of=/dev/null bs=1M)
t_nb=$(best_time nbdcopy "nbd+unix:///flat?socket=$W/h.sock" null:)
say "FUSE dd: ${t_f}s  NBD nbdcopy: ${t_nb}s  ratio throughput FUSE / NBD = $(ratio "$t_nb" "$t_f")   (target >= 0.7)"
stop_last
