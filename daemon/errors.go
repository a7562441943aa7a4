package daemon

import "errors"

var (
	// ErrBadSpec: an export request is malformed (bad name, missing source). Permanent.
	ErrBadSpec = errors.New("bad export request")
	// ErrNoExport: no export has that name. Permanent.
	ErrNoExport = errors.New("no such export")
	// ErrExists: an export of that name exists already. Permanent.
	ErrExists = errors.New("export exists")
	// ErrSource: the export's source could not be opened or is not a readable disk. Permanent
	// for this request; the source may be fixed and the request repeated.
	ErrSource = errors.New("cannot open source")
	// ErrUnreachable: the export's source could not be reached (connection refused, host or
	// network unreachable, the retry budget of a remote source spent). It comes with ErrSource.
	// Retrying later may succeed.
	ErrUnreachable = errors.New("source unreachable")
	// ErrBusy: the export is in use in a way that prevents the request (files of it are open
	// on the FUSE mount, another delete is in progress). Retry later.
	ErrBusy = errors.New("export busy")
	// ErrChainChanged: a writable export's chain is not what its overlay's writes were made
	// over (a link's CID, or a file's version, differs from its record). Permanent until the
	// old files are back or the export is deleted.
	ErrChainChanged = errors.New("chain changed since the export was created")
)
