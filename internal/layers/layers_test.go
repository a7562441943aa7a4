package layers

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/h2kvm/h2kvm"

// TestRepositoryLayers checks this repository against the architecture.
func TestRepositoryLayers(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("the repository root is not at %s: %v", root, err)
	}
	vs, err := Check(root, module, Rules)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		t.Errorf("%s", v)
	}
}

// TestWrongImportsFound: a fixture tree with one wrong import per rule is caught, file by file,
// and its allowed imports are not.
func TestWrongImportsFound(t *testing.T) {
	vs, err := Check("testdata/wrong", module, Rules)
	if err != nil {
		t.Fatal(err)
	}
	// An import may break two rules (bbolt in vfs); each file and import is listed once.
	var got []string
	for _, v := range vs {
		if s := v.File + " " + v.Import; len(got) == 0 || got[len(got)-1] != s {
			got = append(got, s)
		}
	}
	want := []string{
		"cmd/h2kvm/main.go github.com/h2kvm/h2kvm/vfs/vfstest",
		"fixers/linux/linux.go github.com/h2kvm/h2kvm/fixers/windows",
		"fixers/linux/linux.go github.com/h2kvm/h2kvm/vfs",
		"nbdserve/server.go github.com/h2kvm/h2kvm/cmd/h2kvm",
		"nbdserve/server.go github.com/h2kvm/h2kvm/daemon",
		"vfs/bad/bad.go github.com/h2kvm/h2kvm/nbdserve",
		"vfs/bad/bad.go go.etcd.io/bbolt",
		"vfs/bad/bad.go os/exec",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("violations:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
