package tarsrc

import (
	"path"
	"strings"
	"testing"
)

// FuzzCleanName: a member name cleanName accepts is relative, clean, not empty, free of NUL and
// of ".." elements (with either separator), so joined under any folder it stays there; and
// cleaning is idempotent.
func FuzzCleanName(f *testing.F) {
	for _, s := range []string{"vm.ovf", "./disk1.vmdk", "a/b/../c", "../x", "/etc/passwd", `..\x`, `C:\x`, "a\x00b", ".", "./", "a//b/", "x/..", `a\..\..\b`, ".//etc/passwd"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		c, err := cleanName(name)
		if err != nil {
			return
		}
		if c == "" || c == "." || strings.HasPrefix(c, "/") || strings.HasPrefix(c, `\`) || strings.ContainsRune(c, 0) || len(c) >= 2 && c[1] == ':' {
			t.Fatalf("cleanName(%q) = %q", name, c)
		}
		for _, el := range strings.FieldsFunc(c, func(r rune) bool { return r == '/' || r == '\\' }) {
			if el == ".." {
				t.Fatalf("cleanName(%q) = %q keeps ..", name, c)
			}
		}
		if j := path.Join("/root", c); !strings.HasPrefix(j, "/root/") {
			t.Fatalf("cleanName(%q) = %q leaves the folder: %s", name, c, j)
		}
		if c2, err := cleanName(c); err != nil || c2 != c {
			t.Fatalf("cleanName(%q) = %q, then %q, %v", name, c, c2, err)
		}
	})
}
