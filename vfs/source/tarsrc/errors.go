package tarsrc

import "errors"

// ErrUnsafeMember: the archive holds a member that a reader must not trust (an absolute or
// escaping name, a link, a device, a duplicate name). The whole archive is refused. Permanent.
// A member that does not exist is vfs.ErrNotFound; a bad header is vfs.ErrCorrupt.
var ErrUnsafeMember = errors.New("unsafe tar member")
