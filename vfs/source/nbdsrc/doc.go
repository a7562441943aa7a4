// Package nbdsrc reads NBD exports (nbd://host[:port]/export, nbd+unix:///export?socket=PATH,
// and the nbds variants) through internal/libnbd.
//
// Contract: a Source holds up to Options.Conns connections, created lazily and reused, so
// parallel ReadAt calls run in parallel. Reads are split into requests of at most 32 MiB (or
// the server's maximum block size). Server error replies EIO/ENOMEM/EAGAIN/ESHUTDOWN, lost
// connections and requests stalled past StallTimeout are retried within the retry budget on a
// fresh or pooled connection; EINVAL/EOVERFLOW/ERANGE wrap vfs.ErrOutOfRange; an export the
// server does not have wraps vfs.ErrNotFound; other errors are permanent. A cancelled context ends a read with ctx.Err() (the connection carrying it is
// dropped). An export whose size changes between connections is refused.
package nbdsrc
