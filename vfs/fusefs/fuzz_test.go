package fusefs

import (
	"path/filepath"
	"strings"
	"testing"
)

// Export names come from users and API clients: whatever ValidName accepts must be exactly one
// path element that cannot escape the mount.
func FuzzValidName(f *testing.F) {
	for _, s := range []string{"a", ".", "..", "a/b", "a\x00", "...", "../x", " ", "ü", strings.Repeat("x", 300)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if ValidName(name) != nil {
			return
		}
		if name == "." || name == ".." || name == "" || len(name) > MaxNameLen ||
			strings.ContainsAny(name, "/\x00") || filepath.Base(name) != name ||
			filepath.Join("/mnt", name, DiskFile) != "/mnt/"+name+"/"+DiskFile {
			t.Fatalf("ValidName accepted %q", name)
		}
	})
}
