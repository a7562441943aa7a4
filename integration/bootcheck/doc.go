// Package bootcheck boots a disk image under plain QEMU and reports evidence that the guest
// came up: a login prompt on the serial console and an SSH banner through a forwarded port.
//
// Contract: Boot attaches the disk (a file of any qemu format, or an nbd:// / nbd+unix:// URL)
// as virtio-blk with snapshot=on, so the image under test is never written; a virtio-net NIC
// on QEMU user networking forwards a free 127.0.0.1 port to the guest's port 22. BIOS boots
// use SeaBIOS, UEFI boots OVMF with a private copy of the variable store. The accelerator is
// TCG unless Options.Accel or H2KVM_ACCEL says kvm (KVM is not usable on the project's
// machines). QEMU runs in its own process group and is always killed before Boot returns.
//
// The serial console only shows a login prompt when the guest's kernel command line has
// console=ttyS0 (or GRUB/systemd put a getty there); guests without it can still be checked
// with the SSH evidence alone by looking at Result.Network.
//
// Timing: under TCG a small Debian guest reaches SSH in about 25 s on an idle host, but on the
// shared 2-core machine with several other TCG guests running (load 10-15) the fixed
// debian-bios guest needed 3m58s to its login prompt and 4m14s to SSH. Callers that share the
// machine should pass a Timeout of several minutes, and use FailOn to end a run early on
// definitive failure text instead of waiting out the timeout.
//
// The integration tests in this package (H2KVM_INTEGRATION=1) prove the test guests of
// tools/guestbuild: a naive conversion fails, a by-hand fix (testdata/manualfix.sh, test-only)
// boots.
package bootcheck
