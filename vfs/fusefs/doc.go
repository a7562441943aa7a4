// Package fusefs is h2kvm's FUSE front end: it presents a dynamic set of vfs devices as plain
// files under one mount point, so that forensic tools, qemu and libguestfs can open a VM disk
// without NBD and without copying it:
//
//	MOUNT/<export>/disk.raw
//
// One directory per export, one regular file per directory, of size dev.Size(). It is the only
// package in vfs that imports go-fuse; vfs itself knows nothing about FUSE.
//
// # Contract
//
//   - Mount mounts an empty tree; Add and Remove change it while mounted and may be called
//     concurrently with each other and with kernel requests.
//   - Export names are a single path element: 1..255 bytes, no '/', no NUL or other control
//     byte, not "." or "..". Add fails with ErrInvalidName otherwise, ErrExists for a duplicate.
//   - An export is read-only when Add is told so, when the mount is read-only
//     (Options.ReadOnly), or when its device does not implement vfs.Writable. Its file then has
//     mode 0444; opening it for writing, writing, truncating and fallocate fail with EROFS.
//   - A writable export's file has mode 0644. Writes go to dev.WriteAt; fsync and fdatasync call
//     dev.Flush; fallocate(PUNCH_HOLE|KEEP_SIZE) calls dev.Trim and fallocate(ZERO_RANGE) calls
//     dev.Zero; plain fallocate inside the file succeeds without doing anything (the overlay
//     allocates on write). The file has a fixed size: a write that starts at or past the end
//     fails with ENOSPC (as on a block device), one that crosses the end is cut short, and a
//     truncate (or O_TRUNC) to any other size fails with EINVAL. chmod and chown fail with EPERM;
//     timestamp changes are accepted and ignored.
//   - lseek(SEEK_DATA/SEEK_HOLE) answers from dev.Extents: Data extents are data; Zero and Hole
//     extents are holes (both read as zeros). `cp --sparse=auto` and forensic tools skip them.
//   - Every request runs with the context go-fuse hands to it, which is cancelled when the
//     kernel sends a FUSE interrupt (the calling process got a signal while waiting on a
//     synchronous request; readahead for a read-only export is sent in the background and is
//     never interrupted). Device errors reach the
//     kernel through one function, toErrno: vfs.ErrOutOfRange → EINVAL, vfs.ErrReadOnly → EROFS,
//     vfs.ErrUnsupported → ENOTSUP, context.Canceled → EINTR, context.DeadlineExceeded →
//     ETIMEDOUT, a syscall.Errno → itself, anything else → EIO. Errors other than cancellation
//     are logged (Options.Logger) with export and offset, since EIO alone tells a user nothing.
//
// # Caching
//
// Read-only exports are opened with FOPEN_KEEP_CACHE: the kernel page cache keeps what was read
// across opens, and kernel readahead (up to Options.MaxIO) turns small sequential reads into
// large device reads. This assumes a read-only export's bytes do not change while it is
// exported, which holds for a VMDK chain (never written) and for an overlay that no other front
// end writes. Writable exports are opened with FOPEN_DIRECT_IO: every read and write reaches the
// device, so the file never shows stale data when the same overlay is also written over NBD.
// The price is that mmap of a writable export's file is refused by older kernels; qemu,
// libguestfs, dd and cp do not mmap.
//
// # Removing an export
//
// Remove stops new opens of the export at once (they fail with ENOENT), then waits until every
// open file handle of it has been released, or until its context ends. When it returns nil, the
// name is gone from the tree and no request will touch the device again, so the caller may
// close the device. When the context ends first, the export is restored unchanged and Remove
// returns an error wrapping ErrBusy. The kernel releases a handle asynchronously after the last
// close(2), so a Remove right after a close may wait a few milliseconds; give it a context with
// a deadline rather than a cancelled one.
//
// # Unmounting
//
// Unmount fails (the kernel says EBUSY) while a process holds a file or a working directory
// under the mount. Run, used by `h2kvm mount`, serves until its context ends, then unmounts; if
// the mount is busy it detaches it lazily (MNT_DETACH, root only) so that the mount point is
// free at once and the kernel finishes the mount when the last file is closed.
//
// # Tuning
//
// Reads and writes travel in requests of up to Options.MaxIO bytes (default 1 MiB; the kernel
// caps it at its max_pages limit). FUSE caps readahead at 128 KiB during INIT; Mount raises the
// mount's backing-device readahead (/sys/class/bdi/MAJ:MIN/read_ahead_kb) to MaxIO when it may
// (root), so readahead of read-only exports also sends MaxIO-sized requests.
// Attribute and entry timeouts are one second; Add and Remove also invalidate the kernel's
// dentry for the name at once, so a new export is visible and a removed one gone without
// waiting for the timeout. Extended attributes are disabled (the kernel then stops asking for
// security.capability on every write).
package fusefs
