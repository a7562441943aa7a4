// Package libnbd is a small cgo binding to libnbd (1.14, pkg-config libnbd): just what h2kvm's
// NBD source needs — create, export name, connect (URI, Unix socket, TCP), size, block size,
// the can_* flags, pread, block status (base:allocation), shutdown, close.
//
// Contract:
//   - Connect and Pread use libnbd's asynchronous calls and poll in short steps, so a context
//     ends them; a command abandoned that way closes the connection (its reply could otherwise
//     land in freed memory), leaving the Handle dead: callers replace it.
//   - Errors are *Error with libnbd's message and errno, saved in the same C call that failed
//     (libnbd keeps errors per thread). errors.Is(err, syscall.EIO) works.
//   - A Handle serializes its calls with a mutex: one command in flight. Use one Handle per
//     parallel reader (a pool). Close is idempotent.
package libnbd
