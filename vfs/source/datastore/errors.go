package datastore

import (
	"errors"

	"github.com/h2kvm/h2kvm/vfs/source/vsession"
)

// ErrLoginRefused: the vSphere server refused the user name or password. Permanent; the
// credentials must be fixed. It is vsession.ErrLoginRefused.
var ErrLoginRefused = vsession.ErrLoginRefused

// ErrPlaintext: a datastore URL is plain http, which would carry the vSphere password and the
// session cookie in clear, and Options.AllowPlaintext is not set. Permanent, returned before
// any request is sent.
var ErrPlaintext = errors.New("plain http would send the vSphere password and session cookie in clear")
