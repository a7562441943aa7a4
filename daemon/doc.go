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
// Each version of a remote file (location, size, and its Versioner version: an HTTP ETag or
// Last-Modified time) has one cache, created by the first export that opens it while the others
// wait, and shared by every export reading it (caches.go); the cache file is flock'ed while
// open. An export's record keeps its chain (links, CIDs, file versions): a writable export is
// not restored, nor created again under its name, over a chain that changed (ErrChainChanged;
// its overlay is kept), a read-only one is served from the new chain.
//
// A control API error answer carries, besides its message, a kind (bad-input,
// source-unreachable, …) and the sentinels behind it by name (errkind.go); Client turns them back
// into the same sentinels, so that errors.Is answers alike for a daemon in this process and one
// reached over its socket.
package daemon
