package vsession

import "errors"

var (
	// ErrLoginRefused: the vSphere server refused the user name or password. Permanent; the
	// credentials must be fixed.
	ErrLoginRefused = errors.New("vSphere refused the user name or password")
	// ErrNoCredentials: a login was needed but the user or the password is empty (no saved
	// cookie could be adopted). Permanent.
	ErrNoCredentials = errors.New("a vSphere user and password are needed")
	// ErrClosed: the session was logged out; it is not renewed. Permanent.
	ErrClosed = errors.New("vSphere session logged out")
)
