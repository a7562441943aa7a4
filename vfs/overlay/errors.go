package overlay

import "errors"

// ErrMismatch: the recorded overlay does not fit the base (another size or block size) or the
// overlay file is missing or of the wrong size while the map records blocks. Permanent: the
// export needs its overlay discarded or the right base.
var ErrMismatch = errors.New("overlay does not match its base")

// ErrClosed is returned by calls on a closed Overlay. Permanent.
var ErrClosed = errors.New("overlay: closed")
