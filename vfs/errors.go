package vfs

import "errors"

// Sentinel errors. Callers test them with errors.Is; implementations wrap them with %w and a
// prefix that names the subsystem and file ("vmdk: disk.vmdk: grain table 3: ...").
var (
	// ErrCorrupt: the bytes of an image contradict its format (bad magic, a table pointing past
	// the end of the file, a size that cannot be). Permanent.
	ErrCorrupt = errors.New("corrupt image")
	// ErrTruncated: the image ends before data its metadata points at. Permanent.
	ErrTruncated = errors.New("image truncated")
	// ErrUnsupported: a valid image uses a feature this reader does not implement. Permanent.
	ErrUnsupported = errors.New("unsupported")
	// ErrOutOfRange: an I/O request lies (partly) outside the device. Permanent.
	ErrOutOfRange = errors.New("request out of range")
	// ErrReadOnly: a write was sent to a read-only device. Permanent.
	ErrReadOnly = errors.New("read-only device")
	// ErrNotFound: a named file (an extent, a parent link) does not exist. Permanent.
	ErrNotFound = errors.New("not found")
	// ErrChain: a chain of links is inconsistent: a parent cycle, a CID mismatch, a size mismatch,
	// a parent hint that escapes its folder. Permanent.
	ErrChain = errors.New("inconsistent chain")
	// ErrTransient: a remote source failed in a way that may succeed on retry (a dropped
	// connection, HTTP 5xx). Sources retry these themselves within a budget; an error wrapping
	// ErrTransient that reaches a caller means the budget was spent.
	ErrTransient = errors.New("transient source error")
	// ErrUnknownFormat: a file is in none of the disk formats OpenDisk was given (a qcow2, random
	// bytes). Errors wrapping it also wrap ErrUnsupported. Permanent.
	ErrUnknownFormat = errors.New("unknown disk format")
)
