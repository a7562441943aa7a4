// Package httpsrc reads remote files over HTTP(S) with Range requests: one Source per file, one
// Opener per folder tree so a VMDK descriptor's extents and parents are read from the same
// server with the same TLS policy, credentials hook and counters.
//
// Contract:
//   - Open probes the file with "Range: bytes=0-0" and learns its size from Content-Range; a
//     server that ignores ranges is refused (vfs.ErrUnsupported), not worked around.
//   - ReadAt never returns wrong bytes: a body is accepted only under a 206 whose Content-Range
//     starts exactly at the requested offset and whose length matches, a 200 only when the whole
//     file was asked for; an ETag or size change is a permanent error.
//   - Transient failures (connection reset or refused, stalls, 408/429/5xx, short or
//     mislabelled bodies) are retried with exponential backoff and jitter within a budget
//     (retry.Policy); bytes already received are kept. A spent budget returns an error wrapping
//     vfs.ErrTransient. 404/410 wrap vfs.ErrNotFound. A refused certificate (*CertError) is
//     permanent and names the server's thumbprints so a user can pin one.
//   - A request that makes no progress for StallTimeout is abandoned and retried. A cancelled
//     context ends a call with ctx.Err(), unwrapped.
//   - TLS verification is on by default; a CA file, SHA-1/SHA-256 thumbprint pins, or an
//     explicit Insecure option change it. Redirects are not followed.
//   - Names never carry credentials: a password in a URL is refused, user info is dropped.
//
// Sources and Openers are safe for concurrent use; connections are kept alive and shared.
package httpsrc
