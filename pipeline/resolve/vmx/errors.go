package vmx

import "errors"

// ErrInvalid: the file is not a .vmx file or contradicts itself. Permanent.
var ErrInvalid = errors.New("invalid vmx")
