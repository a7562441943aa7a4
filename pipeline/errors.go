package pipeline

import "errors"

// Sentinel errors of the migration pipeline. Callers test them with errors.Is; stages wrap them
// with %w and a prefix naming the stage ("inspect: ...", "validate: boot test: ..."). The CLI maps
// them to exit codes in cmd/h2kvm/errors.go.
var (
	// ErrGuestNotBootable: the guest cannot be made to boot on KVM (no operating system found,
	// no root filesystem, a required fix cannot be applied). It is the only failure that stops
	// the pipeline before CONVERT; everything else is a warning in the report. Permanent.
	ErrGuestNotBootable = errors.New("guest not bootable")
	// ErrBootTest: the converted guest was started under QEMU/libvirt and did not reach the
	// expected state (kernel, network) within the allowed time. Permanent for the given output.
	ErrBootTest = errors.New("boot test failed")
)
