package vsphere

import "errors"

// Sentinel errors; see the package doc.
var (
	ErrLogin       = errors.New("vSphere login refused")
	ErrNotFound    = errors.New("not found in the vSphere inventory")
	ErrAmbiguous   = errors.New("ambiguous name")
	ErrUnsupported = errors.New("unsupported by h2kvm")
	ErrBadURL      = errors.New("bad vsphere:// location")
)
