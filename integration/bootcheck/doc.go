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
// Under TCG on a loaded 2-core host a small Debian guest reaches both prompts in roughly
// 20–60 s; DefaultTimeout leaves room for that.
package bootcheck
