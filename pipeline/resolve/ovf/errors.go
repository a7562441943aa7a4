package ovf

import "errors"

// ErrInvalid: the descriptor or manifest is not well-formed or contradicts itself. Permanent.
var ErrInvalid = errors.New("invalid OVF")

// ErrDigest: a file's digest does not match the manifest. Permanent.
var ErrDigest = errors.New("digest mismatch")
