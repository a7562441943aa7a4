// Package vmdk reads VMware virtual disks (VMDK) and flattens snapshot chains into one
// read-only vfs.Device.
//
// Open takes the name of a link (a text descriptor, a monolithicSparse or streamOptimized file
// that embeds its descriptor, or a bare sparse extent) and follows parentFileNameHint down to
// the base, opening every file through a vfs.Opener, so a chain on a datastore is read from the
// datastore. The result, a *Chain, reads each range from the topmost link that holds it and
// reports block status (Data / Zero / Hole with the depth of the supplying link).
//
// Formats: descriptors of every createType (the reader drives off extent lines, not
// createType) in UTF-8, windows-1252, GBK, Big5 or Shift_JIS; extents FLAT and VMFS (also
// twoGbMaxExtentFlat pieces), ZERO, hosted sparse KDMV (monolithicSparse, twoGbMaxExtentSparse
// pieces, deltas; the redundant grain directory and tables are used when the primary ones are
// unusable), streamOptimized (zlib grains behind markers; grain directory in the header, or at
// the end behind the footer), and, through cowd.go and sesparse.go, COWD and seSparse.
//
// Truncated streams: a streamOptimized file whose footer is missing (an interrupted export or
// download) still opens: the grain map is rebuilt by walking the grain markers from overHead.
// Grains found read normally; ranges the map cannot vouch for (past the last grain seen, when
// the markers were in ascending order; every unseen grain otherwise) fail with vfs.ErrTruncated
// naming the file and offset; Info says where the stream ended.
//
// Untrusted input: every size and pointer read from a file is checked before use (capacity at
// most MaxCapacity, grain directory at most 4 Mi entries, descriptor at most 1 MiB, table
// pointers inside the file). Headers do not size memory on their own: a sparse extent (KDMV,
// COWD, seSparse) whose header capacity is below its descriptor line is refused before any
// table is read, and only the directory entries that cover the line are read, whatever the
// header declares; a stream without footer keeps one small entry per grain found, not a table.
// What a chain holds for as long as it is open (grain directories, rebuilt stream maps) is
// charged to a metadata budget, Options.MetadataBudget (DefaultMetadataBudget, 256 MiB), before
// it is allocated; a chain that needs more is refused with vfs.ErrUnsupported naming the file
// and the option. Grain tables are cached per extent in fixed-size caches outside the budget.
// Allocated-byte walks (Info) read each distinct grain table once (COWD directories may name
// one table many times), refuse directories whose distinct tables could not fit in the file
// without overlapping, so they read at most each file once, and are remembered per extent.
// Problems are reported as vfs.ErrCorrupt (contradictory bytes),
// vfs.ErrTruncated (metadata points past the end of the file), vfs.ErrUnsupported (valid but
// not implemented) or vfs.ErrChain (inconsistent links), wrapped with the file name and
// offset. All these errors are permanent; errors from Sources pass through (a source retries
// its own transient errors).
//
// Choices that differ from qemu: RDONLY extents are read (qemu skips non-RW lines); NOACCESS
// extents read as zeros; a grain table entry of 1 reads as zeros even without the zeroed-grain
// header flag (sector 1 can never hold a grain); a CID mismatch is refused at Open (qemu
// fails the first read that reaches the parent) unless Options.IgnoreCIDMismatch.
//
// A Chain is safe for concurrent use. Grain tables are cached per extent (bounded LRU) and
// contiguous grains are read with one source read, so sequential reads cost about one source
// read per request.
package vmdk
