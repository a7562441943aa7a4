package datastore

import "errors"

// ErrLoginRefused: the vSphere server refused the user name or password. Permanent; the
// credentials must be fixed.
var ErrLoginRefused = errors.New("vSphere refused the user name or password")
