// Package daemon is the engine behind `h2kvm serve`: it holds a state directory (the bbolt
// store, cache files, overlays), turns each export's SOURCE into a device stack
//
//	remote file sources → lazy cache → VMDK chain → copy-on-write overlay (writable exports)
//
// and offers the stacks through the NBD server, an optional FUSE mount and a control API
// (HTTP+JSON on a unix socket, mode 0600).
//
// `h2kvm migrate` runs the same code in-process when no daemon is given.
//
// Exports are recorded in the store when created and restored on restart. An export that
// cannot be restored (its source is away) is not served but keeps its record and overlay: the
// next start restores it, creating it again with the same source restores it at once, deleting
// it discards its overlay; meanwhile its name is refused for any other source. Shutdown
// (SIGTERM) stops accepting, drains in-flight NBD requests, flushes overlays and closes the
// store.
//
// Names being created or deleted are reserved: a concurrent request for the same name gets
// ErrExists or ErrBusy, so that two stacks never share an overlay. An export whose file is open
// on the FUSE mount is not deleted (ErrBusy) until the file is closed.
//
// A control API error answer carries, besides its message, a kind (bad-input,
// source-unreachable, …) and the sentinels behind it by name (errkind.go); Client turns them back
// into the same sentinels, so that errors.Is answers alike for a daemon in this process and one
// reached over its socket.
package daemon
