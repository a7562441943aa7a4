package vfs

import (
	"context"
	"errors"
	"syscall"
)

// Errno is the one table from device errors to POSIX errno values that every front end starts
// from (FUSE hands the errno to the kernel, NBD sends its own numbers, which equal Linux's):
//
//	ErrOutOfRange                      EINVAL
//	ErrReadOnly                        EROFS
//	ErrUnsupported                     ENOTSUP
//	context.DeadlineExceeded           ETIMEDOUT
//	an errno in the chain (ENOSPC, …)  that errno
//	anything else                      EIO
//
// It returns 0 for nil. context.Canceled is not mapped: what a cancelled call means differs by
// front end (an interrupted system call for FUSE, a server going away for NBD), so each front
// end decides it before calling Errno; here it is EIO.
func Errno(err error) syscall.Errno {
	var errno syscall.Errno
	switch {
	case err == nil:
		return 0
	case errors.Is(err, ErrOutOfRange):
		return syscall.EINVAL
	case errors.Is(err, ErrReadOnly):
		return syscall.EROFS
	case errors.Is(err, ErrUnsupported):
		return syscall.ENOTSUP
	case errors.Is(err, context.DeadlineExceeded):
		return syscall.ETIMEDOUT
	case errors.As(err, &errno) && errno != 0:
		return errno
	}
	return syscall.EIO
}
