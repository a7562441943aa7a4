package nbdserve

import (
	"context"
	"errors"
	"syscall"

	"github.com/h2kvm/h2kvm/vfs"
)

// Sentinel errors of package nbdserve.
var (
	// ErrProtocol: a client broke the NBD protocol in a way that loses framing (bad magic, an
	// oversized option, an unknown client flag). The connection is dropped. Permanent.
	ErrProtocol = errors.New("nbd protocol violation")
	// ErrServerClosed is returned by Serve after Shutdown (or after its context ended).
	ErrServerClosed = errors.New("nbd: server closed")
	// ErrExportExists: AddExport was called with a name already in use.
	ErrExportExists = errors.New("nbd: export exists")
	// ErrNoExport: RemoveExport or Stats named an export that does not exist.
	ErrNoExport = errors.New("nbd: no such export")
)

// NBD error values (proto.md "Error values"). They equal Linux errno numbers.
const (
	eperm     = 1
	eio       = 5
	enomem    = 12
	einval    = 22
	enospc    = 28
	eoverflow = 75
	enotsup   = 95
	eshutdown = 108
)

// toNBDError maps an error from a device (or from the server itself) to the NBD error value
// sent to the client. It is the only place where Go errors become NBD errors.
func toNBDError(err error) uint32 {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, context.Canceled):
		// The connection or the server is going away; the client must soft-disconnect.
		return eshutdown
	}
	// NBD has fewer errors than POSIX: each errno of the shared table folds into one of them.
	switch vfs.Errno(err) {
	case syscall.EINVAL:
		return einval
	case syscall.EROFS, syscall.EPERM:
		return eperm
	case syscall.ENOTSUP:
		return enotsup
	case syscall.ENOSPC, syscall.EDQUOT, syscall.EFBIG:
		return enospc
	case syscall.EOVERFLOW:
		return eoverflow
	}
	return eio
}
