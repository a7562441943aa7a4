package guests

import "errors"

// Sentinel errors of the guest builder. Callers test them with errors.Is.
var (
	// ErrUnknownGuest: no recipe has the requested name. Permanent.
	ErrUnknownGuest = errors.New("unknown guest")
	// ErrToolMissing: a host tool the build needs (debootstrap, guestfish, qemu-img, ...) is not
	// installed. Tests skip on it only when H2KVM_REQUIRE_TOOLS is unset.
	ErrToolMissing = errors.New("build tool missing")
	// ErrBuild: the recipe script failed; the message carries the tail of its log. Usually
	// permanent for a given recipe and mirror; a mirror outage makes it transient.
	ErrBuild = errors.New("guest build failed")
	// ErrBadManifest: a cache entry's manifest.json is unreadable or names missing files. The
	// builder treats such an entry as absent and rebuilds it.
	ErrBadManifest = errors.New("bad guest manifest")
)
