#!/usr/bin/env bash
# make bench: h2kvm side by side with its peers on the same files, printed as ratios.
# Nothing here asserts a time; the numbers are for people. A measurement whose command fails,
# or whose bytes differ from the peer's, stops the script (exit 1): a fast wrong answer is
# not a result.
#
#   H2KVM_BENCH_SIZE   virtual size of the big images (default 2G)
#   H2KVM_BENCH_RUNS   runs per measurement; the best wall time is kept (default 3)
#   H2KVM_BENCH_DIR    work folder; images are made once per size and reused
#                      (default /var/tmp/h2kvm-bench/SIZE)
#   H2KVM_BENCH_BIN    the h2kvm binary to measure (default bin/h2kvm), e.g. an older build
#   BENCH              what to run: all (default), io (sections 1-6), migrate (section 7 only);
#                      `make bench BENCH=migrate`
#   H2KVM_BENCH_GUESTS section 7's test guests, comma separated (default: every guest cached in
#                      /var/cache/h2kvm-test; none is built unless H2KVM_BENCH_BUILD=1)
#   H2KVM_BENCH_MIGRATE_TOOLS  section 7's subjects (default h2kvm,naive,v2v);
#                      H2KVM_BENCH_BOOT=0 skips its boot checks; H2KVM_BENCH_CACHE_LIMIT is
#                      passed to h2kvm migrate --cache-limit
#
# Every row shows the best wall time of RUNS runs and, where a server is measured, the least
# CPU time that server spent (user+system, all threads) in one run: on a shared, loaded
# machine CPU time is the steadier of the two. The load average is printed with each section.
#
# What is compared:
#  1. nbdcopy … null: of a mostly allocated (15 of 16 MiB random) flat image: h2kvm serving
#     the monolithicFlat descriptor vs `nbdkit file` on its -flat.vmdk extent; the same data
#     as monolithicSparse: h2kvm vs `qemu-nbd -r -f vmdk`.
#  2. qemu-img convert -O qcow2 of a 10%-allocated monolithicSparse image: from the h2kvm
#     export vs directly from the file; qemu-img compare proves the outputs identical.
#  3. Peak RSS (VmHWM) of h2kvm serve after full reads of the SIZE flat export and of a 16 GiB
#     sparse export.
#  4. Remote: a two-link chain (top.vmdk → sparse.vmdk, SIZE virtual) served over loopback
#     HTTP by tools/benchhttp, which counts the bytes it sends. h2kvm flattens the chain and
#     nbdcopy reads the whole virtual disk (cold cache, fresh state each run). nbdkit cannot
#     flatten VMDK, so its side is `nbdkit curl` + readahead filter reading BOTH link files
#     raw, concurrently, each with nbdcopy: the least a VMDK-unaware client must fetch to hold
#     the disk's content. Throughput ratio = nbdkit time / h2kvm time for that same content.
#     Bytes fetched are divided by the allocated bytes of the flattened chain (qemu-img map
#     of top.vmdk, data: true): the grains a reader cannot do without.
#  5. Peak local disk (blocks, du) of the state directory during the remote read with the
#     default --cache-limit, divided by the virtual size.
#  6. FUSE vs NBD on one export: dd bs=1M from MOUNT/flat/disk.raw vs nbdcopy.
#  7. Migration of the cached test guests (tools/benchmigrate, see its doc.go), one after
#     another on this machine: `h2kvm migrate` of the chain top served by tools/benchhttp vs a
#     naive pipeline (curl the whole chain, qemu-img convert -O qcow2, fix the copy with
#     virt-customize, or guestfish when virt-customize cannot mount the guest) vs `virt-v2v -i
#     disk … -o local -of qcow2`; each output booted under TCG (integration/bootcheck: login
#     prompt, SSH banner). Prints a table per guest and writes results.json into its folder
#     (H2KVM_BENCH_DIR/migrate, default /var/tmp/h2kvm-bench/migrate). Minutes per guest.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
BIN=${H2KVM_BENCH_BIN:-$top/bin/h2kvm}
SIZE=${H2KVM_BENCH_SIZE:-2G}
RUNS=${H2KVM_BENCH_RUNS:-3}
W=${H2KVM_BENCH_DIR:-/var/tmp/h2kvm-bench/$SIZE}
TCK=$(getconf CLK_TCK)
BENCH=${BENCH:-all}
case $BENCH in
all | io | migrate) ;;
*) echo "bench: BENCH=$BENCH: want all, io or migrate" >&2; exit 1 ;;
esac

for t in qemu-img qemu-io qemu-nbd nbdkit nbdcopy fusermount3 bc curl go; do
  [ "$BENCH" = migrate ] && break
  command -v "$t" >/dev/null || { echo "bench: $t is not installed (tools/install-deps.sh)" >&2; exit 1; }
done
[ -x "$BIN" ] || { echo "bench: $BIN missing: go build -o bin/h2kvm ./cmd/h2kvm" >&2; exit 1; }
mkdir -p "$W"
cd "$W"

pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if mountpoint -q "$W/mnt" 2>/dev/null; then fusermount3 -u "$W/mnt" || true; fi
  rm -f "$W"/*.sock
}
trap cleanup EXIT

say() { printf '%s\n' "$*"; }
now() { date +%s.%N; }
calc() { echo "$*" | bc -l; }
fmt2() { printf '%.2f' "$1"; }
load() { cut -d' ' -f1-3 /proc/loadavg; }
bytes_of() { stat -c %s "$1"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
mibs() { printf '%.0f' "$(calc "$1 / 1048576 / $2")"; }
die() { echo "bench: $*" >&2; exit 1; }

# measure PID CMD...: runs CMD $RUNS times; sets T (best wall seconds) and C (least CPU seconds
# spent by process PID during one run; empty without PID). A failing CMD stops the bench.
measure() {
  local pid=$1 s e t c0 c1 c
  shift
  T="" C=""
  for _ in $(seq "$RUNS"); do
    [ -n "$pid" ] && c0=$(cpu_ticks "$pid")
    s=$(now)
    "$@" >/dev/null 2>"$W/cmd.err" || { cat "$W/cmd.err" >&2; die "failed: $*"; }
    e=$(now)
    t=$(printf '%.3f' "$(calc "$e - $s")")
    if [ -z "$T" ] || [ "$(calc "$t < $T")" = 1 ]; then T=$t; fi
    if [ -n "$pid" ]; then
      c1=$(cpu_ticks "$pid")
      c=$(calc "($c1 - $c0) / $TCK")
      if [ -z "$C" ] || [ "$(calc "$c < $C")" = 1 ]; then C=$c; fi
    fi
  done
}

# keep_min VAR VALUE: VAR = VALUE when VAR is empty or larger.
keep_min() {
  if [ -z "${!1:-}" ] || [ "$(calc "$2 < ${!1}")" = 1 ]; then printf -v "$1" '%s' "$2"; fi
}

# The summary table: one row per target.
rows=()
row() { rows+=("$(printf '%-44s|%-26s|%-26s|%-8s|%-8s|%s' "$@")"); }
met() { if [ "$(calc "$1")" = 1 ]; then echo yes; else echo NO; fi; }

wait_sock() { for _ in $(seq 400); do [ -S "$1" ] && return 0; sleep 0.05; done; die "no socket $1"; }
start_bg() { "$@" & pids+=($!); }
stop_last() {
  local p=${pids[-1]}
  unset 'pids[-1]'
  kill "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
}
start_h2kvm() { # start_h2kvm SOCK [serve flags] -- EXPORT...
  local sock=$1 flags=() args=()
  shift
  while [ $# -gt 0 ] && [ "$1" != -- ]; do flags+=("$1"); shift; done
  shift
  for e in "$@"; do args+=(--export "$e"); done
  rm -rf "$W/state" "$sock"
  start_bg "$BIN" serve --state-dir "$W/state" --nbd-socket "$sock" "${flags[@]}" "${args[@]}" --log-level warn
  wait_sock "$sock"
}
start_nbdkit() { # start_nbdkit SOCK ARGS...
  local sock=$1
  shift
  rm -f "$sock"
  start_bg nbdkit -U "$sock" -f -r "$@" 2>>"$W/nbdkit.log"
  wait_sock "$sock"
}
uri() { echo "nbd+unix:///$2?socket=$1"; }

# --- 7. migration (run last, or alone with BENCH=migrate) -----------------------------------
bench_migrate() {
  local mw=${H2KVM_BENCH_DIR:-/var/tmp/h2kvm-bench}/migrate none=()
  say
  say "== 7. migration of the cached test guests: h2kvm vs curl+convert+fix vs virt-v2v   [load $(load)]"
  # In a full run, no cached guest means nothing to measure; asked for alone, it is an error.
  [ "$BENCH" = all ] && none=(-none-ok)
  mkdir -p "$mw"
  (cd "$top" && go build -o "$mw/benchmigrate" ./tools/benchmigrate && go build -o "$mw/benchhttp" ./tools/benchhttp)
  "$mw/benchmigrate" -bin "$BIN" -benchhttp "$mw/benchhttp" -out "$mw" "${none[@]}"
}
if [ "$BENCH" = migrate ]; then
  bench_migrate
  exit 0
fi

# --- images (made once per size) -------------------------------------------------------------
if [ ! -f flat.vmdk ]; then
  say "making a $SIZE mostly allocated monolithicFlat image…"
  qemu-img create -q -f vmdk -o subformat=monolithicFlat flat.tmp.vmdk "$SIZE"
  total=$(bytes_of flat.tmp-flat.vmdk)
  # 15 of every 16 MiB hold random data: mostly allocated, not compressible.
  head -c $((16 << 20)) /dev/urandom >block16.bin
  for ((i = 0; i < total >> 20; i += 16)); do
    dd if=block16.bin of=flat.tmp-flat.vmdk bs=1M count=15 seek=$i conv=notrunc status=none
  done
  rm -f block16.bin
  mv flat.tmp-flat.vmdk flat-flat.vmdk
  sed 's/flat\.tmp-flat\.vmdk/flat-flat.vmdk/' flat.tmp.vmdk >flat.vmdk
  rm -f flat.tmp.vmdk
fi
vsize=$(bytes_of flat-flat.vmdk)
if [ ! -f sparse.vmdk ]; then
  say "making a monolithicSparse copy…"
  qemu-img convert -O vmdk -o subformat=monolithicSparse flat.vmdk sparse.tmp.vmdk
  mv sparse.tmp.vmdk sparse.vmdk
fi
if [ ! -f thin.vmdk ]; then
  say "making a 10%-allocated monolithicSparse image…"
  qemu-img create -q -f vmdk -o subformat=monolithicSparse thin.tmp.vmdk "$SIZE"
  cmds=()
  for ((off = 0; off < vsize; off += 10 << 20)); do
    cmds+=(-c "write -P 0x$(printf %02x $((off / (10 << 20) % 250 + 1))) $off 1M")
  done
  qemu-io -f vmdk "${cmds[@]}" thin.tmp.vmdk >/dev/null
  mv thin.tmp.vmdk thin.vmdk
fi
if [ ! -f big16.vmdk ]; then
  say "making a 16 GiB sparse image…"
  qemu-img create -q -f vmdk -o subformat=monolithicSparse big16.tmp.vmdk 16G
  for g in 0 4 8 12 15; do qemu-io -f vmdk -c "write -P 0x33 ${g}G 8M" big16.tmp.vmdk >/dev/null; done
  mv big16.tmp.vmdk big16.vmdk
fi
if [ ! -f top.vmdk ]; then
  say "making a snapshot link on top of sparse.vmdk…"
  qemu-img create -q -f vmdk -b sparse.vmdk -F vmdk top.tmp.vmdk "$SIZE"
  qemu-io -f vmdk -c "write -P 0x77 100M 64M" -c "write -P 0x78 $((vsize / 2)) 32M" top.tmp.vmdk >/dev/null
  mv top.tmp.vmdk top.vmdk
fi
sum_data() { qemu-img map --output=json "$@" | grep '"data": true' | sed 's/.*"length": \([0-9]*\).*/\1/' | paste -sd+ | bc; }

say "h2kvm bench: SIZE=$SIZE ($vsize bytes) RUNS=$RUNS dir=$W"
say "load average at start: $(load) on $(nproc) cores"

# --- 1. sequential read ----------------------------------------------------------------------
say
say "== 1. nbdcopy … null: of the $SIZE mostly allocated image   [load $(load)]"
start_h2kvm "$W/h.sock" -- "flat=$W/flat.vmdk,ro" "sparse=$W/sparse.vmdk,ro" "thin=$W/thin.vmdk,ro"
hpid=${pids[-1]}
nbdcopy "$(uri "$W/h.sock" flat)" - | cmp - flat-flat.vmdk || die "h2kvm flat export differs from flat-flat.vmdk"
start_nbdkit "$W/k.sock" file "$W/flat-flat.vmdk"
kpid=${pids[-1]}
# Interleave the two servers run by run so that both see the same load.
for _ in $(seq "$RUNS"); do
  RUNS=1 measure "$hpid" nbdcopy "$(uri "$W/h.sock" flat)" null:
  keep_min t_h "$T"
  keep_min c_h "$C"
  RUNS=1 measure "$kpid" nbdcopy "$(uri "$W/k.sock" "")" null:
  keep_min t_k "$T"
  keep_min c_k "$C"
done
stop_last
say "h2kvm monolithicFlat:  ${t_h}s  $(mibs "$vsize" "$t_h") MiB/s  server CPU $(fmt2 "$c_h")s"
say "nbdkit file:           ${t_k}s  $(mibs "$vsize" "$t_k") MiB/s  server CPU $(fmt2 "$c_k")s"
r1=$(calc "$t_k / $t_h")
say "throughput h2kvm / nbdkit file = $(fmt2 "$r1")  (target >= 1.0); CPU nbdkit / h2kvm = $(fmt2 "$(calc "$c_k / $c_h")")"
row "seq read flat: throughput / nbdkit file" "$(mibs "$vsize" "$t_h") MiB/s cpu $(fmt2 "$c_h")s" "$(mibs "$vsize" "$t_k") MiB/s cpu $(fmt2 "$c_k")s" "$(fmt2 "$r1")" ">= 1.0" "$(met "$r1 >= 1.0")"

nbdcopy "$(uri "$W/h.sock" sparse)" - | cmp - flat-flat.vmdk || die "h2kvm sparse export differs from flat-flat.vmdk"
rm -f "$W/q.sock"
start_bg qemu-nbd -r -t -f vmdk -k "$W/q.sock" -x sparse --cache=writeback "$W/sparse.vmdk"
qpid=${pids[-1]}
wait_sock "$W/q.sock"
for _ in $(seq "$RUNS"); do
  RUNS=1 measure "$hpid" nbdcopy "$(uri "$W/h.sock" sparse)" null:
  keep_min t_hs "$T"
  keep_min c_hs "$C"
  RUNS=1 measure "$qpid" nbdcopy "$(uri "$W/q.sock" sparse)" null:
  keep_min t_q "$T"
  keep_min c_q "$C"
done
stop_last
say "h2kvm monolithicSparse: ${t_hs}s  $(mibs "$vsize" "$t_hs") MiB/s  server CPU $(fmt2 "$c_hs")s"
say "qemu-nbd -r -f vmdk:    ${t_q}s  $(mibs "$vsize" "$t_q") MiB/s  server CPU $(fmt2 "$c_q")s"
r2=$(calc "$t_q / $t_hs")
say "throughput h2kvm / qemu-nbd = $(fmt2 "$r2")  (target >= 1.0); CPU qemu-nbd / h2kvm = $(fmt2 "$(calc "$c_q / $c_hs")")"
row "seq read sparse: throughput / qemu-nbd" "$(mibs "$vsize" "$t_hs") MiB/s cpu $(fmt2 "$c_hs")s" "$(mibs "$vsize" "$t_q") MiB/s cpu $(fmt2 "$c_q")s" "$(fmt2 "$r2")" ">= 1.0" "$(met "$r2 >= 1.0")"

# --- 2. convert ------------------------------------------------------------------------------
say
say "== 2. qemu-img convert -O qcow2 of a 10%-allocated monolithicSparse image   [load $(load)]"
RUNS=$((2 * RUNS)) measure "$hpid" qemu-img convert -f raw -O qcow2 "$(uri "$W/h.sock" thin)" "$W/out1.qcow2"
t_c1=$T c_c1=$C
RUNS=$((2 * RUNS)) measure "" qemu-img convert -O qcow2 -f vmdk "$W/thin.vmdk" "$W/out2.qcow2"
t_c2=$T
qemu-img compare -q out1.qcow2 out2.qcow2 || die "converted outputs differ (qemu-img compare)"
say "from the h2kvm export: ${t_c1}s (server CPU $(fmt2 "$c_c1")s, qcow2 $(bytes_of out1.qcow2) bytes)"
say "directly from the file: ${t_c2}s (qcow2 $(bytes_of out2.qcow2) bytes); outputs identical (qemu-img compare)"
r3=$(calc "$t_c1 / $t_c2")
say "time h2kvm / direct = $(fmt2 "$r3")  (target <= 1.2)"
row "convert thin to qcow2: time / direct" "${t_c1}s" "${t_c2}s" "$(fmt2 "$r3")" "<= 1.2" "$(met "$r3 <= 1.2")"
rm -f out1.qcow2 out2.qcow2
stop_last

# --- 3. memory -------------------------------------------------------------------------------
say
say "== 3. server memory after full reads of $SIZE and 16 GiB disks   [load $(load)]"
start_h2kvm "$W/h.sock" -- "big=$W/big16.vmdk,ro" "flat=$W/flat.vmdk,ro"
nbdcopy "$(uri "$W/h.sock" flat)" null:
hwm_small=$(awk '/VmHWM/ {print $2}' "/proc/${pids[-1]}/status")
# --no-extents: every byte of the 16 GiB goes through the read path, holes included.
nbdcopy --no-extents "$(uri "$W/h.sock" big)" null:
qemu-img compare -q -f raw -F vmdk "$(uri "$W/h.sock" big)" big16.vmdk || die "the 16 GiB export differs from big16.vmdk (qemu-img compare)"
hwm=$(awk '/VmHWM/ {print $2}' "/proc/${pids[-1]}/status")
stop_last
say "peak RSS after $SIZE: $((hwm_small / 1024)) MiB; after 16 GiB as well: $((hwm / 1024)) MiB  (target < 100 MiB)"
row "peak RSS after 16 GiB reads (MiB)" "$((hwm / 1024)) (after $SIZE: $((hwm_small / 1024)))" "-" "-" "< 100" "$(met "$hwm < 102400")"

# --- 4 + 5. remote chain ---------------------------------------------------------------------
say
say "== 4. remote two-link chain over loopback HTTP ($SIZE virtual)   [load $(load)]"
(cd "$top" && go build -o "$W/benchhttp" ./tools/benchhttp)
rm -f "$W/http.url"
start_bg "$W/benchhttp" -dir "$W" -url-file "$W/http.url" >/dev/null
for _ in $(seq 200); do [ -s "$W/http.url" ] && break; sleep 0.05; done
url=$(head -1 "$W/http.url")
stats() { curl -sf "${url}.stats" | sed 's/.*"bytes":\([0-9]*\).*/\1/'; }
http_use() { curl -sf "${url}.stats" | sed 's/.*"conns":\([0-9]*\),"requests":\([0-9]*\).*/\2 requests on \1 connections/'; }
reset() { curl -sf -X POST "${url}.stats/reset" >/dev/null; }
alloc=$(sum_data top.vmdk)
linkbytes=$(($(bytes_of sparse.vmdk) + $(bytes_of top.vmdk)))
t_r="" peak=0
for r in $(seq "$RUNS"); do
  reset
  start_h2kvm "$W/h.sock" -- "remote=${url}top.vmdk,ro"
  rpid=${pids[-1]}
  ( while :; do du -sB1 "$W/state" 2>/dev/null | cut -f1; sleep 0.2; done ) >"$W/du.log" &
  dupid=$!
  RUNS=1 measure "$rpid" nbdcopy "$(uri "$W/h.sock" remote)" null:
  kill "$dupid"; wait "$dupid" 2>/dev/null || true
  f=$(stats)
  p=$( (cat "$W/du.log"; du -sB1 "$W/state" | cut -f1) | sort -n | tail -1)
  [ "$p" -gt "$peak" ] && peak=$p
  if [ -z "$t_r" ] || [ "$(calc "$T < $t_r")" = 1 ]; then t_r=$T c_r=$C fetched=$f use_r=$(http_use); fi
  if [ "$r" = 1 ]; then
    rss_r=$(awk '/VmHWM/ {print $2}' "/proc/$rpid/status")
    # The same bytes as qemu reading the local files.
    reset
    qemu-img compare -q -f raw -F vmdk "$(uri "$W/h.sock" remote)" top.vmdk || die "remote export differs from top.vmdk (qemu-img compare)"
  fi
  stop_last
done
t_n="" c_n=""
for r in $(seq "$RUNS"); do
  start_nbdkit "$W/c1.sock" --filter=readahead curl "${url}sparse.vmdk"
  n1=${pids[-1]}
  start_nbdkit "$W/c2.sock" --filter=readahead curl "${url}top.vmdk"
  n2=${pids[-1]}
  reset
  c0=$(($(cpu_ticks "$n1") + $(cpu_ticks "$n2")))
  s=$(now)
  nbdcopy "$(uri "$W/c1.sock" "")" null: & j1=$!
  nbdcopy "$(uri "$W/c2.sock" "")" null: || die "nbdcopy from nbdkit curl failed"
  wait "$j1" || die "nbdcopy from nbdkit curl failed"
  e=$(now)
  c=$(calc "($(cpu_ticks "$n1") + $(cpu_ticks "$n2") - $c0) / $TCK")
  t=$(printf '%.3f' "$(calc "$e - $s")")
  f=$(stats)
  stop_last
  stop_last
  if [ -z "$t_n" ] || [ "$(calc "$t < $t_n")" = 1 ]; then t_n=$t c_n=$c fetched_n=$f use_n=$(http_use); fi
done
say "allocated bytes of the flattened chain: $alloc; link files: $linkbytes bytes"
say "h2kvm: $(fmt2 "$t_r")s for the flattened chain, server CPU $(fmt2 "$c_r")s, fetched $fetched bytes ($use_r), peak RSS $((rss_r / 1024)) MiB"
say "nbdkit curl+readahead: $(fmt2 "$t_n")s for both link files raw, server CPU $(fmt2 "$c_n")s, fetched $fetched_n bytes ($use_n)"
grep -q "readahead: warning" "$W/nbdkit.log" 2>/dev/null && say "  (nbdkit 1.32 warns that readahead does nothing over the curl plugin: serialize_requests, no .cache)"
r4=$(calc "$t_n / $t_r")
f4=$(calc "$fetched / $alloc")
f4n=$(calc "$fetched_n / $alloc")
say "throughput (same content) h2kvm / nbdkit = $(fmt2 "$r4")  (target >= 1.5)"
say "bytes fetched / allocated: h2kvm $(fmt2 "$f4") (target <= 1.05), nbdkit $(fmt2 "$f4n")"
row "remote chain: throughput / nbdkit curl" "$(fmt2 "$t_r")s cpu $(fmt2 "$c_r")s" "$(fmt2 "$t_n")s cpu $(fmt2 "$c_n")s" "$(fmt2 "$r4")" ">= 1.5" "$(met "$r4 >= 1.5")"
row "remote chain: fetched / allocated" "$(fmt2 "$f4")" "$(fmt2 "$f4n")" "$(fmt2 "$f4")" "<= 1.05" "$(met "$f4 <= 1.05")"
r5=$(calc "$peak / $vsize")
say
say "== 5. peak local disk of the state dir during the remote read: $peak bytes = $(fmt2 "$r5") × virtual size (default cache limit)"
row "local disk during remote read / vsize" "$(fmt2 "$r5") ($((peak >> 20)) MiB)" "-" "$(fmt2 "$r5")" "print" "-"
stop_last # benchhttp

# --- 6. FUSE vs NBD --------------------------------------------------------------------------
say
say "== 6. FUSE vs NBD on the same export   [load $(load)]"
mkdir -p "$W/mnt"
if mountpoint -q "$W/mnt"; then fusermount3 -u "$W/mnt"; fi
start_h2kvm "$W/h.sock" --mount "$W/mnt" -- "flat=$W/flat.vmdk,ro"
fpid=${pids[-1]}
for _ in $(seq 200); do [ -f "$W/mnt/flat/disk.raw" ] && break; sleep 0.05; done
[ -f "$W/mnt/flat/disk.raw" ] || die "no FUSE file $W/mnt/flat/disk.raw"
cmp "$W/mnt/flat/disk.raw" flat-flat.vmdk || die "FUSE file differs from flat-flat.vmdk"
for _ in $(seq "$RUNS"); do
  # The export is read-only, so the kernel keeps its pages: drop them, or dd measures RAM.
  dd if="$W/mnt/flat/disk.raw" iflag=nocache count=0 status=none
  RUNS=1 measure "$fpid" dd if="$W/mnt/flat/disk.raw" of=/dev/null bs=1M
  keep_min t_f "$T"
  keep_min c_f "$C"
  RUNS=1 measure "$fpid" nbdcopy "$(uri "$W/h.sock" flat)" null:
  keep_min t_nb "$T"
  keep_min c_nb "$C"
done
stop_last
r6=$(calc "$t_nb / $t_f")
say "FUSE dd bs=1M: ${t_f}s $(mibs "$vsize" "$t_f") MiB/s (server CPU $(fmt2 "$c_f")s); NBD nbdcopy: ${t_nb}s $(mibs "$vsize" "$t_nb") MiB/s (server CPU $(fmt2 "$c_nb")s)"
say "throughput FUSE / NBD = $(fmt2 "$r6")  (target >= 0.7)"
row "FUSE dd / NBD nbdcopy throughput" "$(mibs "$vsize" "$t_f") MiB/s" "$(mibs "$vsize" "$t_nb") MiB/s" "$(fmt2 "$r6")" ">= 0.7" "$(met "$r6 >= 0.7")"

# --- summary ---------------------------------------------------------------------------------
say
say "== Summary (SIZE=$SIZE, best of $RUNS; load average now $(load) on $(nproc) cores)"
printf '%-44s|%-26s|%-26s|%-8s|%-8s|%s\n' "measure" "h2kvm" "peer" "ratio" "target" "met"
for l in "${rows[@]}"; do say "$l"; done

if [ "$BENCH" = all ]; then bench_migrate; fi
