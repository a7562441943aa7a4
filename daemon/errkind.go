package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"

	"github.com/h2kvm/h2kvm/vfs"
)

// The cause of a failed request crosses the control API as a machine-readable kind and a list
// of causes in the JSON error body, so that a client of a daemon in another process sees the
// same sentinels (errors.Is) as a caller of a daemon in its own process, and a command exits
// with the same code either way.
//
//	{"error": "export \"x\": cannot open source: vmdk: …/base.vmdk: not found",
//	 "kind": "bad-input", "causes": ["not-found"]}

// ErrorKind is the class of a control API error.
type ErrorKind string

// The kinds of error a control request may end with.
const (
	// KindBadRequest: the request is malformed (ErrBadSpec).
	KindBadRequest ErrorKind = "bad-request"
	// KindNoExport: no export has that name (ErrNoExport).
	KindNoExport ErrorKind = "no-export"
	// KindConflict: the name is taken or busy, or its kept overlay no longer fits the chain
	// (ErrExists, ErrBusy, ErrChainChanged).
	KindConflict ErrorKind = "conflict"
	// KindBadInput: the source's bytes, chain or location are wrong (a corrupt, truncated or
	// unsupported image, a missing file or parent, an inconsistent chain): the user must fix
	// the input.
	KindBadInput ErrorKind = "bad-input"
	// KindUnreachable: the source could not be reached (connection refused, host or network
	// unreachable, the retry budget spent): ErrUnreachable.
	KindUnreachable ErrorKind = "source-unreachable"
	// KindCanceled: the request was cancelled.
	KindCanceled ErrorKind = "canceled"
	// KindInternal: anything else.
	KindInternal ErrorKind = "internal"
)

// causes are the sentinels an error body names, by their wire name. The first group is what
// makes an error bad input.
var causes = []struct {
	name string
	err  error
}{
	{"corrupt", vfs.ErrCorrupt},
	{"truncated", vfs.ErrTruncated},
	{"unsupported", vfs.ErrUnsupported},
	{"not-found", vfs.ErrNotFound},
	{"chain", vfs.ErrChain},
	{"out-of-range", vfs.ErrOutOfRange},
	{"unknown-format", vfs.ErrUnknownFormat},

	{"read-only", vfs.ErrReadOnly},
	{"transient", vfs.ErrTransient},
	{"canceled", context.Canceled},
	{"deadline-exceeded", context.DeadlineExceeded},
	{"ECONNREFUSED", syscall.ECONNREFUSED},
	{"ECONNRESET", syscall.ECONNRESET},
	{"EHOSTUNREACH", syscall.EHOSTUNREACH},
	{"ENETUNREACH", syscall.ENETUNREACH},
	{"ETIMEDOUT", syscall.ETIMEDOUT},
}

const badInputCauses = 7 // causes[:badInputCauses] make an error bad input

// unreachableErrnos are the network failures that mean the source's host could not be reached.
var unreachableErrnos = []error{syscall.ECONNREFUSED, syscall.EHOSTUNREACH, syscall.ENETUNREACH, syscall.ETIMEDOUT}

// isUnreachable reports whether err says the source could not be reached: a spent retry budget
// or a network failure.
func isUnreachable(err error) bool {
	if errors.Is(err, ErrUnreachable) || errors.Is(err, vfs.ErrTransient) {
		return true
	}
	for _, e := range unreachableErrnos {
		if errors.Is(err, e) {
			return true
		}
	}
	var dns *net.DNSError
	var op *net.OpError
	return errors.As(err, &dns) || errors.As(err, &op)
}

// sourceError is the error of an export whose source cannot be opened: it wraps ErrSource and,
// when the source could not be reached, ErrUnreachable.
func sourceError(export string, err error) error {
	if k, _ := classify(err); k == KindUnreachable {
		return fmt.Errorf("export %q: %w (%w): %w", export, ErrSource, ErrUnreachable, err)
	}
	return fmt.Errorf("export %q: %w: %w", export, ErrSource, err)
}

// classify returns the kind of err and the names of the sentinels it wraps.
func classify(err error) (ErrorKind, []string) {
	var names []string
	bad := false
	for i, c := range causes {
		if errors.Is(err, c.err) {
			names = append(names, c.name)
			bad = bad || i < badInputCauses
		}
	}
	switch {
	case errors.Is(err, ErrBadSpec):
		return KindBadRequest, names
	case errors.Is(err, ErrNoExport):
		return KindNoExport, names
	case errors.Is(err, ErrExists), errors.Is(err, ErrBusy), errors.Is(err, ErrChainChanged):
		return KindConflict, names
	case errors.Is(err, context.Canceled):
		return KindCanceled, names
	case bad:
		return KindBadInput, names
	case isUnreachable(err):
		return KindUnreachable, names
	}
	return KindInternal, names
}

// kindErrors are the sentinels a client wraps for a kind, besides the causes.
var kindErrors = map[ErrorKind]error{
	KindBadRequest: ErrBadSpec, KindNoExport: ErrNoExport, KindUnreachable: ErrUnreachable,
}

// remoteError is an error the daemon answered with: its message, and the sentinels its kind and
// causes stand for (errors.Is sees them all).
type remoteError struct {
	msg  string
	errs []error
}

func (e *remoteError) Error() string   { return e.msg }
func (e *remoteError) Unwrap() []error { return e.errs }

// decodeError rebuilds the error of a response: status is the HTTP status, body its error body.
// statusErr is the sentinel the status stands for (nil if none); an error body from a daemon
// that sends no kind still gets it.
func decodeError(body apiError, statusErr error) error {
	var errs []error
	add := func(e error) {
		for _, x := range errs {
			if x == e {
				return
			}
		}
		errs = append(errs, e)
	}
	if statusErr != nil {
		add(statusErr)
	}
	if e := kindErrors[body.Kind]; e != nil {
		add(e)
	}
	for _, n := range body.Causes {
		for _, c := range causes {
			if c.name == n {
				add(c.err)
			}
		}
	}
	return &remoteError{msg: body.Error, errs: errs}
}
