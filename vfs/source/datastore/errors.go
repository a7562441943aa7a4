package datastore

import "github.com/h2kvm/h2kvm/vfs/source/vsession"

// ErrLoginRefused: the vSphere server refused the user name or password. Permanent; the
// credentials must be fixed. It is vsession.ErrLoginRefused.
var ErrLoginRefused = vsession.ErrLoginRefused
