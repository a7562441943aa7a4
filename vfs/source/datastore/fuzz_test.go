package datastore

import (
	"net/url"
	"path"
	"strings"
	"testing"
)

// FuzzMapVMFS: a parent hint maps only when it names the URL's own datastore, and then to a
// clean path below /folder/ (never the folder root itself, never out of it).
func FuzzMapVMFS(f *testing.F) {
	for _, s := range []string{"/vmfs/volumes/ds1/web/web.vmdk", "/vmfs/volumes/ds1/../ds2/x.vmdk", "/vmfs/volumes/ds1/", "/vmfs/volumes/ds1/a/../../../etc/passwd",
		"/vmfs/volumes/5f1e-uuid/x.vmdk", "vmfs/volumes/ds1/x", "/vmfs/volumes//ds1/x", "/vmfs/volumes/ds1/./x/"} {
		f.Add(s, "ds1")
	}
	f.Fuzz(func(t *testing.T, p, ds string) {
		base, err := url.Parse("https://esx/folder/web/web.vmdk?dcPath=DC&dsName=" + url.QueryEscape(ds))
		if err != nil {
			return
		}
		m, ok := mapVMFS(base, p)
		if !ok {
			return
		}
		if ds == "" || !strings.HasPrefix(path.Clean(p), "/vmfs/volumes/"+ds+"/") {
			t.Fatalf("mapVMFS(%q) on datastore %q = %q: not that datastore", p, ds, m)
		}
		rest := strings.TrimPrefix(m, FolderRoot)
		if !strings.HasPrefix(m, FolderRoot) || rest == "" || path.Clean(m) != m || strings.HasPrefix(path.Clean("/"+rest), "/..") {
			t.Fatalf("mapVMFS(%q) = %q: not a clean file below %s", p, m, FolderRoot)
		}
	})
}
