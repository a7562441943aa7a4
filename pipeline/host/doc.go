// Package host checks the machine h2kvm runs on: which external tools are installed and at which
// version, whether FUSE can be used, and whether KVM really works.
//
// Contract:
//   - CheckKVM answers "can QEMU run a guest with -accel kvm here?" by booting the host's own
//     kernel under KVM and watching the serial console, because /dev/kvm may exist and still be
//     unusable (nested virtualisation: QEMU aborts or the guest hangs). The answer is cached for
//     the life of the process; a probe cut short by the caller's context is not cached.
//     H2KVM_KVM=on|off skips the probe (on: trust /dev/kvm; off: always TCG).
//   - Tools reports every external program the pipeline and the tests rely on, with its path and
//     version; Missing lists the required ones that are absent.
//   - FUSE reports whether /dev/fuse can be opened and fusermount3 is installed.
//
// The package is a leaf: it imports nothing from h2kvm, so any package may use it. It only runs
// programs and reads device nodes; it never changes the host.
package host
