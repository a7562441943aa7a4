package urlpath

import (
	"errors"
	"net/url"
	"testing"

	"github.com/h2kvm/h2kvm/vfs"
)

func TestResolve(t *testing.T) {
	base, _ := url.Parse("nbd+unix:///vm/a.vmdk?socket=/tmp/s")
	root := Root(base.Path)
	if root != "/vm/" {
		t.Fatalf("root %q", root)
	}
	for rel, want := range map[string]string{
		"a-flat.vmdk":   "nbd+unix:///vm/a-flat.vmdk?socket=/tmp/s",
		"x/../b.vmdk":   "nbd+unix:///vm/b.vmdk?socket=/tmp/s",
		"/vm/c.vmdk":    "nbd+unix:///vm/c.vmdk?socket=/tmp/s",
		"../etc/passwd": "",
		"../../../../x": "",
		"/../vm/x":      "",
		"/etc/passwd":   "",
		"":              "",
	} {
		u, err := Resolve(base, rel, root)
		if want == "" {
			if !errors.Is(err, vfs.ErrChain) {
				t.Errorf("%q: want ErrChain, got %v %v", rel, u, err)
			}
			continue
		}
		if err != nil || u.String() != want {
			t.Errorf("%q: got %v %v, want %s", rel, u, err, want)
		}
	}
}
