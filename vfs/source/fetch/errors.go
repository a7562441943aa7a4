package fetch

import "errors"

// ErrClosed: Get was called on a closed Pool (the source was closed). Permanent.
var ErrClosed = errors.New("source closed")
