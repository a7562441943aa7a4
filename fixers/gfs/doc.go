// Package gfs opens libguestfs sessions the way h2kvm needs them: the direct backend (no
// libvirt in the way), TCG when KVM is unusable, and disks that are either NBD exports on a unix
// socket (the h2kvm daemon, or any NBD server) or local image files.
//
// Contract:
//   - Open creates a handle, configures it, adds the drives in order (the first is /dev/sda in
//     the appliance, the second /dev/sdb, ...), launches the appliance and returns a Session.
//     Launch takes about 15 s under TCG and up to a minute on a loaded host.
//   - Open honours ctx: if ctx ends during the launch, Open returns ctx's error at once and the
//     half-started appliance is shut down in the background when libguestfs lets go of it
//     (libguestfs cannot interrupt its own launch).
//   - Read-only drives are never written: libguestfs puts a throw-away overlay over them, so
//     writes inside the appliance succeed but do not reach the export or file.
//   - Close shuts the appliance down (flushing writes to read-write drives and reporting any
//     error doing so), then frees the handle. It is idempotent. A Session is not safe for
//     concurrent use; libguestfs serialises calls on one handle anyway.
//   - The backend and its settings come from Options, not from LIBGUESTFS_BACKEND and
//     LIBGUESTFS_BACKEND_SETTINGS; other libguestfs environment variables (LIBGUESTFS_DEBUG,
//     LIBGUESTFS_TRACE, LIBGUESTFS_CACHEDIR, TMPDIR) still apply.
//
// The package decides nothing about KVM itself: callers pass Options.ForceTCG, normally
// !host.CheckKVM(ctx).
package gfs
