package resolve

import (
	"fmt"

	"github.com/h2kvm/h2kvm/vfs"
)

// ErrOutside: a .vmx or an OVF names a disk outside its own folder (for a remote one, outside
// its datastore or URL folder), and Options.AllowOutsideDisks is not set. A crafted VM folder
// could otherwise have any file the process can read (another VM's disk, a host device, a
// file behind a symlink) migrated and exposed. Permanent; it is a vfs.ErrChain.
var ErrOutside = fmt.Errorf("disk outside the VM's folder (allow it with --allow-outside-disks): %w", vfs.ErrChain)
