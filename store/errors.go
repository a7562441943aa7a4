package store

import "errors"

// ErrLocked: another process (another h2kvm daemon on the same state directory) holds the
// database. Permanent for this process: stop the other daemon or use another state directory.
var ErrLocked = errors.New("state database is locked by another process")

// ErrSchema: the database was written by an incompatible version of h2kvm. Permanent.
var ErrSchema = errors.New("unknown state database schema")

// Missing records are reported with vfs.ErrNotFound.
