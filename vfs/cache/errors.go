package cache

import "errors"

// ErrClosed is returned by calls on a Cache after Close. Permanent.
var ErrClosed = errors.New("cache: closed")
