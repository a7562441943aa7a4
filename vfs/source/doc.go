// Package source turns a user's location into a vfs.Opener: local files, plain HTTP(S) with
// Range (httpsrc), vSphere datastore /folder URLs with a session (datastore), SFTP (sftpsrc)
// and NBD (nbdsrc). Open picks the kind from the location and returns the normalized name of
// the first file; every extent and parent a descriptor names is then opened through the same
// Opener, on the same remote, with the same credentials and counters.
//
// Credentials and TLS/retry settings come from Config, built from the environment by
// ConfigFromEnv (never from flags); secrets are of type Secret, which prints redacted, and no
// name returned by an Opener or Source carries a password. Each Opener reports what it fetched
// (Stats) so the daemon can show per-export statistics, and must be Closed (logout, disconnect).
//
// Errors follow vfs: permanent ones wrap vfs sentinels (ErrNotFound, ErrChain, ErrUnsupported,
// ErrOutOfRange, ErrTruncated); a spent retry budget wraps vfs.ErrTransient; a cancelled context
// returns ctx.Err() unwrapped.
package source
