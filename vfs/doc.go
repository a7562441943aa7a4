// Package vfs is the device model of h2kvm: random-access byte sources, VMDK formats, the
// flattened chain, the lazy cache and the copy-on-write overlay, all behind one small contract.
//
// A Device is a fixed-size virtual block device that can be read at any offset and that tells,
// for any range, which parts hold data, which read as zeros, and which are unallocated holes
// (Extents). Optional abilities are small interfaces (abilities.go) that front ends find by type
// assertion: Writable for devices that accept writes, FileMapper for bytes that lie verbatim in
// local files (sendfile), Prefetcher for fetching ahead of reads (NBD_CMD_CACHE), FastZeroer for
// zeroing that only changes a map, and Prioritizer for sources that keep metadata longer.
//
// Bytes flow one way: sources → formats → chain → overlay → front ends. Nothing in this package
// (or below it) knows about NBD, FUSE kernels or guest logic; front ends depend on vfs, never the
// reverse. vfs imports no bbolt: persistent maps go through the narrow interfaces its
// sub-packages declare, which package store implements.
//
// Every I/O call takes a context; a cancelled context ends the call with context.Canceled,
// unwrapped, as soon as the implementation can notice it.
package vfs
