// Command benchmigrate measures a whole migration of the cached test guests of tools/guestbuild,
// h2kvm side by side with two peers on the same machine, one after another:
//
//  1. h2kvm: `h2kvm migrate URL --output DIR` where URL is the guest's chain top served over
//     loopback HTTP by tools/benchhttp (which counts the bytes it sends); no boot test, and
//     H2KVM_KVM=off so no KVM probe runs. Numbers come from report.json (stage times, overlay
//     bytes) and from the outside (wall time, bytes sent by benchhttp, sampled disk use).
//  2. naive: curl the whole chain from the same server into a staging folder, `qemu-img
//     convert -O qcow2`, then fix the copy the way a careful admin would (the script in
//     naive.go): virt-customize first; when virt-customize cannot mount the guest (it cannot
//     when fstab names /dev/disk/by-path devices), the same script through guestfish with the
//     filesystems mounted by hand. Both attempts are timed and reported.
//  3. virt-v2v: `virt-v2v -i disk TOP.vmdk -o local -os DIR -of qcow2`, timed; a failure is a
//     result, with the reason taken from its log.
//  4. Each output that exists is booted with integration/bootcheck (plain QEMU, TCG,
//     virtio-blk, virtio-net): login prompt and SSH banner, with times.
//
// Guests: -guests (env H2KVM_BENCH_GUESTS, comma separated) or every guest the cache holds for
// its current recipe. Guests are never built unless -build (env H2KVM_BENCH_BUILD=1) asks.
//
// Staging is the local disk use (allocated blocks) sampled every 0.25 s: for h2kvm, of its state
// folder OUTPUT/.h2kvm ("excluding output") and of the whole output folder ("including
// output"); for the naive pipeline, of the download folder alone and of download + qcow2.
//
// Results are printed as one table per guest plus ratios, and written as JSON (-json, default
// OUT/results.json, rewritten after every guest). Each guest works in OUT/GUEST, which is
// removed and made anew at the start of its run; outputs and logs stay there afterwards. Nothing asserts a time: the numbers are for people. The load average is
// recorded at every step because the machine is shared.
//
// Caveats: every appliance and every guest runs under TCG, so absolute times are minutes and
// vary with the machine's load; compare the ratios, and the load average next to them.
package main
