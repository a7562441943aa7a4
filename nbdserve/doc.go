// Package nbdserve is the NBD protocol server of h2kvm: it publishes vfs devices as named NBD
// exports to qemu, libnbd (nbdcopy, nbdinfo), libguestfs, the Linux kernel and any other
// client speaking fixed newstyle NBD (NetworkBlockDevice/nbd doc/proto.md).
//
// # What it implements
//
// Handshake: fixed newstyle only (oldstyle and non-fixed newstyle clients are dropped), with
// NO_ZEROES; options EXPORT_NAME, ABORT, LIST, INFO, GO (NBD_INFO_EXPORT always, NAME,
// DESCRIPTION and BLOCK_SIZE when asked: minimum 1, preferred 4096, maximum MaxPayload),
// STRUCTURED_REPLY, LIST_META_CONTEXT and SET_META_CONTEXT with the contexts base:allocation and
// qemu:allocation-depth, and STARTTLS when Options.TLSConfig is set (NBD_REP_ERR_POLICY
// otherwise). Other options are answered NBD_REP_ERR_UNSUP with framing intact; option data is
// capped at 64 KiB and the whole negotiation at Options.HandshakeTimeout. Extended headers are
// not implemented (clients fall back to structured replies).
//
// Transmission: READ (structured replies send OFFSET_DATA and OFFSET_HOLE chunks following the
// device's Extents; simple replies otherwise), WRITE, FLUSH, TRIM, WRITE_ZEROES (NO_HOLE selects
// Writable.Zero, otherwise Trim, which also reads back as zeros; FAST_ZERO needs a
// vfs.FastZeroer), CACHE (vfs.Prefetch: the device's Prefetcher, else a read of its data extents), BLOCK_STATUS (REQ_ONE honoured) and DISC (requests in flight
// finish first). FUA is a Flush after the command. Exports of devices that are not
// vfs.Writable, or added ReadOnly, advertise NBD_FLAG_READ_ONLY and answer writes with EPERM.
//
// # Concurrency and resources
//
// Every connection has one reader goroutine; requests run concurrently, at most
// Options.Workers at a time, and hold at most Options.MaxInFlightBytes of payload buffers
// (pooled; the reader stops reading while the cap is reached). All connections together hold at
// most Options.MaxBufferedBytes (a server-wide budget, 256 MiB by default), at most
// Options.MaxConns connections are open at once (64 by default; more are closed on accept),
// and a reply that cannot be written within Options.WriteTimeout cuts its connection, so a
// client that stops reading its replies gives its share of the budget back. ServerStats shows
// the buffered bytes, their peak, and the refused and dropped connections. Replies are written whole under
// a per-connection mutex, in completion order. A READ is read from the device completely before
// its reply is sent, so device errors never force a hard disconnect — except bytes that a
// vfs.FileMapper device maps to local files, which are sent with sendfile(2) as the reply is
// written; a file that fails then cuts the connection. Each request runs with the
// connection's context, cancelled when the connection dies or its export is removed.
//
// Device errors are translated by one function, toNBDError: vfs.ErrOutOfRange → EINVAL,
// vfs.ErrReadOnly → EPERM, vfs.ErrUnsupported → ENOTSUP, ENOSPC/EDQUOT/EFBIG → ENOSPC,
// context.Canceled → ESHUTDOWN, everything else → EIO. Protocol errors that lose framing drop
// the connection; all other bad requests get EINVAL (ENOSPC for writes past the end) and the
// connection continues.
//
// # Transports and TLS
//
// Unix sockets are guarded by file permissions. Every other connection (TCP) is treated as
// reachable by anyone on the host — and by guests whose user-mode network reaches the host's
// loopback — so writable exports are served to it only after STARTTLS (NBD_REP_ERR_TLS_REQD
// otherwise, the protocol's SELECTIVETLS mode) unless Options.InsecureTCPWrites is set;
// Options.RequireTLSOnTCP makes TCP TLS-only (FORCEDTLS) while the unix socket stays plain.
// TLS is x509 only: Go's crypto/tls has no TLS-PSK, so the PSK files of nbdkit and qemu
// (username:hexkey) cannot be served. Client certificates are checked when TLSConfig asks for
// them (tls.RequireAndVerifyClientCert), which is the way to authenticate clients.
//
// # Contract for devices
//
// Devices MUST be safe for concurrent use (vfs.Device says so). CAN_MULTI_CONN is advertised
// for read-only exports by default, and for writable ones only when ExportOptions.MultiConn
// says that a Flush covers the writes of every connection. Shutdown drains connections and
// flushes writable devices; it never closes devices, which belong to the caller.
package nbdserve
