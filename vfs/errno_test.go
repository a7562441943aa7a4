package vfs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"testing"
)

func TestErrno(t *testing.T) {
	for _, c := range []struct {
		err  error
		want syscall.Errno
	}{
		{nil, 0},
		{fmt.Errorf("mem: %w", ErrOutOfRange), syscall.EINVAL},
		{fmt.Errorf("overlay: %w", ErrReadOnly), syscall.EROFS},
		{fmt.Errorf("vmdk: %w", ErrUnsupported), syscall.ENOTSUP},
		{fmt.Errorf("fetch: %w", context.DeadlineExceeded), syscall.ETIMEDOUT},
		{&os.PathError{Op: "write", Path: "f", Err: syscall.ENOSPC}, syscall.ENOSPC},
		{fmt.Errorf("vmdk: %w", ErrCorrupt), syscall.EIO},
		{context.Canceled, syscall.EIO},
		{errors.New("anything"), syscall.EIO},
	} {
		if got := Errno(c.err); got != c.want {
			t.Errorf("Errno(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
