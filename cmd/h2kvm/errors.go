package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/alecthomas/kong"

	"github.com/h2kvm/h2kvm/pipeline"
	"github.com/h2kvm/h2kvm/pipeline/resolve/ovf"
	"github.com/h2kvm/h2kvm/pipeline/resolve/vmx"
	"github.com/h2kvm/h2kvm/pipeline/resolve/vsphere"
	"github.com/h2kvm/h2kvm/vfs"
	"github.com/h2kvm/h2kvm/vfs/source/tarsrc"
)

// Exit codes. They are part of the CLI contract: scripts and batch schedulers act on them.
const (
	exitOK             = 0
	exitInternal       = 1   // a bug, an environment problem (missing tool), an I/O failure
	exitBadInput       = 2   // the user's input is wrong: fix the image, the chain or the command line
	exitNotBootable    = 3   // pipeline.ErrGuestNotBootable
	exitBootTestFailed = 4   // pipeline.ErrBootTest
	exitInterrupted    = 130 // SIGINT/SIGTERM: 128 + SIGINT, as shells report it
)

// ErrUsage marks an error in how the command was called that the grammar cannot catch (two
// options that exclude each other, a malformed SOURCE). Commands return usageErrorf(...).
var ErrUsage = errors.New("usage")

// usageErrorf returns an error wrapping ErrUsage, so that it exits with code 2.
func usageErrorf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUsage, fmt.Sprintf(format, args...))
}

// exitCode maps an error returned by a command, or by parsing, to the process exit code. This is
// the only place that decides exit codes. The order matters: an interruption wins over what it
// caused, and a pipeline verdict wins over the input error behind it.
func exitCode(err error) int {
	var parseErr *kong.ParseError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, context.Canceled):
		return exitInterrupted
	case errors.Is(err, pipeline.ErrGuestNotBootable):
		return exitNotBootable
	case errors.Is(err, pipeline.ErrBootTest):
		return exitBootTestFailed
	case errors.As(err, &parseErr),
		errors.Is(err, ErrUsage),
		errors.Is(err, vfs.ErrCorrupt),
		errors.Is(err, vfs.ErrTruncated),
		errors.Is(err, vfs.ErrUnsupported),
		errors.Is(err, vfs.ErrNotFound),
		errors.Is(err, vfs.ErrChain),
		errors.Is(err, vfs.ErrOutOfRange),
		isBadVM(err):
		return exitBadInput
	default:
		return exitInternal
	}
}

// isBadVM: the VM description is wrong or names nothing that exists: an OVF, manifest, tar or
// VMX the user must fix, or a vSphere location, snapshot or login that does not hold.
func isBadVM(err error) bool {
	for _, e := range []error{ovf.ErrInvalid, ovf.ErrDigest, vmx.ErrInvalid, tarsrc.ErrUnsafeMember,
		vsphere.ErrLogin, vsphere.ErrNotFound, vsphere.ErrAmbiguous, vsphere.ErrBadURL, vsphere.ErrUnsupported} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// describe is the message printed for err on stderr.
func describe(err error) string {
	if errors.Is(err, context.Canceled) {
		if err == context.Canceled {
			return "interrupted"
		}
		return "interrupted: " + err.Error()
	}
	return err.Error()
}
