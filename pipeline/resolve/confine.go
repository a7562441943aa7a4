package resolve

import (
	"net/url"
	"path"
	"path/filepath"
	"strings"

	"github.com/h2kvm/h2kvm/vfs"
	"github.com/h2kvm/h2kvm/vfs/source/datastore"
)

// confined reports whether the disk location disk, named by the descriptor at desc (a .vmx or
// an .ovf), stays where desc is:
//
//   - a local desc: disk is in desc's folder or below it, symbolic links resolved in both
//     (vfs.Within), so a link in the folder does not lead out;
//   - a datastore URL: disk is a file of the same host, datacenter and datastore (a VM's
//     disks may sit in another folder of its datastore);
//   - another URL: disk has the same scheme and host, and its path is in desc's URL folder.
func confined(desc, disk string) bool {
	if !strings.Contains(desc, "://") {
		if strings.Contains(disk, "://") {
			return false
		}
		return vfs.Within(filepath.Dir(desc), disk)
	}
	du, err := url.Parse(desc)
	if err != nil {
		return false
	}
	u, err := url.Parse(disk)
	if err != nil || u.Scheme != du.Scheme || !strings.EqualFold(u.Host, du.Host) || u.Opaque != "" {
		return false
	}
	p := path.Clean("/" + u.Path)
	if datastore.IsDatastoreURL(du) {
		dq, q := du.Query(), u.Query()
		return datastore.IsDatastoreURL(u) && q.Get("dsName") == dq.Get("dsName") && q.Get("dcPath") == dq.Get("dcPath") &&
			strings.HasPrefix(p, datastore.FolderRoot)
	}
	dir := path.Dir(path.Clean("/" + du.Path))
	return dir == "/" || strings.HasPrefix(p, dir+"/")
}
