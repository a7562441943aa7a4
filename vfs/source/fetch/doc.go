// Package fetch is what the remote sources (nbdsrc, sftpsrc, httpsrc) share, written once: a
// bounded pool of connections (Pool) and the ReadAt of a remote file (Reader), so that each
// source implements only how to dial, how to classify its errors and how to fetch one chunk.
//
// Contract of Reader.ReadAt (the vfs.Source contract): a read is clipped to the file's size; a
// short read happens only at the end and returns io.EOF exactly; a read at or past the end
// returns 0, io.EOF; a negative offset wraps vfs.ErrOutOfRange. The read is split into chunks
// of at most Chunk bytes, each retried through retry.Do within the policy's budget (only errors
// wrapping vfs.ErrTransient are retried). Bytes a failed attempt filled are kept, so a retry asks
// only for the rest of its chunk. A cancelled or expired context returns ctx.Err() unwrapped;
// any other error is prefixed with the subsystem, the file's name, the chunk's length and
// offset, and keeps its sentinels (a spent budget still wraps vfs.ErrTransient).
//
// Contract of Pool: at most Size connections exist (in use or idle); Get reuses an idle one or
// dials, waiting while all are in use; Put returns a usable one, Drop discards a broken one and
// the next successful dial counts as a reconnect. After Close, Get fails with ErrClosed and
// returned connections are closed. All methods may be called concurrently.
//
// Open retries the opening of a file with the same rules for the context and for errors.
//
// Statistics: Reader counts the payload bytes a fetch filled; a fetch counts the requests it
// sends (it alone knows when one was sent); Pool counts reconnects.
package fetch
