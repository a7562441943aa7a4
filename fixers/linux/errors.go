package linux

import (
	"errors"

	"github.com/h2kvm/h2kvm/fixers"
)

// Sentinel errors of the Linux fixers. Callers test them with errors.Is. All are permanent for
// a given guest: retrying does not help. ErrNoOS, ErrUnsupported and ErrNotBootable are the
// fixers-level refusal sentinels themselves (fixers.ErrNoOS, ...), so a caller that does not
// know which fixer ran tests those.
var (
	// ErrNoOS: inspection found no operating system on the disks. Plan returns it; the
	// pipeline stops (nothing to boot).
	ErrNoOS = fixers.ErrNoOS
	// ErrUnsupported: the guest is not one the Linux fixers can handle (not Linux, unknown
	// distribution, an architecture the appliance cannot run, no initramfs generator where one
	// is needed). Plan returns it before anything is changed.
	ErrUnsupported = fixers.ErrUnsupported
	// ErrNotBootable: the guest cannot boot on KVM with virtio and h2kvm cannot fix that (no
	// installed kernel has virtio block and PCI drivers). Plan returns it before anything is
	// changed.
	ErrNotBootable = fixers.ErrNotBootable
	// ErrMount: a filesystem the fixes need (the root, /boot, /usr) could not be mounted.
	ErrMount = errors.New("guest filesystem not mountable")
	// ErrGuestCommand: a command run inside the guest (update-initramfs, update-grub, dpkg)
	// failed; the message carries its output.
	ErrGuestCommand = errors.New("guest command failed")
	// ErrPlan: Apply was given a plan that does not fit (nil, refused, or from other facts).
	ErrPlan = errors.New("bad plan")
)
