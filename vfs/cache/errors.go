package cache

import "errors"

// ErrClosed is returned by calls on a Cache after Close. Permanent.
var ErrClosed = errors.New("cache: closed")

// ErrLocked is returned by New when another Cache (in this process or another one, such as a
// second daemon on the same state directory) holds the cache file. Permanent while that Cache
// stays open.
var ErrLocked = errors.New("cache: file in use by another cache")
