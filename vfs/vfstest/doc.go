// Package vfstest is the contract suite for vfs devices: every Device implementation (memory
// device, VMDK chain, cache, overlay) runs TestDevice against the bytes it must hold, and every
// Writable runs TestWritable.
//
// TestDevice checks ReadAt at many aligned and unaligned offsets and sizes, the io.ReaderAt
// end-of-file rules (a read reaching Size returns the bytes before it and io.EOF; a read at or
// past Size returns 0 bytes), concurrent reads, that Extents covers any range in order without
// gaps or overlaps and clipped to Size (callers loop over prefixes), that sub-range answers agree
// with the whole-device map, that Hole and Zero ranges read as zeros, and that a cancelled
// context ends ReadAt and Extents with context.Canceled.
//
// The suite uses only the public vfs contract and may be imported by any test.
package vfstest
