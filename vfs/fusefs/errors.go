package fusefs

import (
	"context"
	"errors"
	"syscall"

	"github.com/h2kvm/h2kvm/vfs"
)

// Sentinel errors of the FUSE front end. All are permanent for the call that returned them.
var (
	// ErrInvalidName: an export name is not a single safe path element.
	ErrInvalidName = errors.New("invalid export name")
	// ErrExists: Add was given a name that is already exported.
	ErrExists = errors.New("export exists")
	// ErrBusy: Remove's context ended while files of the export were still open, or Unmount
	// found the mount in use. The caller may retry later.
	ErrBusy = errors.New("export busy")
)

// toErrno translates an error from a device (or from this package) into the errno the kernel
// hands to the process that made the system call. It is the only place that does so.
func toErrno(err error) syscall.Errno {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, context.Canceled):
		return syscall.EINTR
	case errors.Is(err, ErrBusy):
		return syscall.EBUSY
	}
	return vfs.Errno(err)
}
