package bootcheck

import "errors"

// ErrBadOptions: Options cannot describe a boot (no disk, unknown firmware or accelerator, a
// disk qemu-img cannot read, missing OVMF). Permanent. A guest that fails to boot is NOT an
// error: it is a Result with Booted or Network false.
var ErrBadOptions = errors.New("bad boot options")
