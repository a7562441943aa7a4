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
// Exports are recorded in the store when created and restored on restart. Shutdown (SIGTERM)
// stops accepting, drains in-flight NBD requests, flushes overlays and closes the store.
package daemon
