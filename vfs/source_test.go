package vfs_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/h2kvm/h2kvm/vfs"
)

// TestLocalOpenerRootFollowsSymlinks: the root check compares real paths, so a symlink inside
// the folder that points out of it is refused, and a root reached through a symlink still
// admits its own files.
func TestLocalOpenerRootFollowsSymlinks(t *testing.T) {
	tmp := t.TempDir()
	root := filepath.Join(tmp, "vm")
	outside := filepath.Join(tmp, "secret")
	for _, d := range []string{root, outside, filepath.Join(root, "sub")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{filepath.Join(outside, "host.vmdk"), filepath.Join(root, "sub", "in.vmdk"), filepath.Join(root, "disk.vmdk")} {
		if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mustLink := func(target, name string) {
		t.Helper()
		if err := os.Symlink(target, name); err != nil {
			t.Fatal(err)
		}
	}
	mustLink(outside, filepath.Join(root, "escape"))                                // a folder link out
	mustLink(filepath.Join(outside, "host.vmdk"), filepath.Join(root, "link.vmdk")) // a file link out
	mustLink(filepath.Join(root, "sub", "in.vmdk"), filepath.Join(root, "ok.vmdk")) // a link that stays in
	mustLink(root, filepath.Join(tmp, "alias"))                                     // the root through a link

	base := filepath.Join(root, "disk.vmdk")
	o := vfs.LocalOpener{Root: root}
	for _, rel := range []string{"escape/host.vmdk", "link.vmdk", "escape/missing.vmdk", filepath.Join(root, "escape", "host.vmdk")} {
		if p, err := o.Resolve(base, rel); !errors.Is(err, vfs.ErrChain) {
			t.Errorf("Resolve(%q) = %q, %v; want ErrChain", rel, p, err)
		}
	}
	for _, rel := range []string{"ok.vmdk", "sub/in.vmdk", "missing.vmdk", "sub/../disk.vmdk"} {
		if _, err := o.Resolve(base, rel); err != nil {
			t.Errorf("Resolve(%q): %v", rel, err)
		}
	}
	alias := vfs.LocalOpener{Root: filepath.Join(tmp, "alias")}
	if _, err := alias.Resolve(filepath.Join(tmp, "alias", "disk.vmdk"), "sub/in.vmdk"); err != nil {
		t.Errorf("root through a symlink: %v", err)
	}
	if _, err := alias.Resolve(filepath.Join(tmp, "alias", "disk.vmdk"), "link.vmdk"); !errors.Is(err, vfs.ErrChain) {
		t.Errorf("link out of a root reached through a symlink: %v", err)
	}
}

// FuzzLocalOpenerResolve: a name LocalOpener resolves under a Root stays below the Root, both
// as written and with symbolic links resolved (the folder holds one that leads out).
func FuzzLocalOpenerResolve(f *testing.F) {
	for _, s := range []string{"a.vmdk", "../x", "/etc/passwd", "sub/../../x", "escape/host.vmdk", "escape", "sub/./a", "", ".", "..", "sub//"} {
		f.Add(s)
	}
	tmp := f.TempDir()
	root := filepath.Join(tmp, "vm")
	if err := os.MkdirAll(filepath.Join(root, "sub"), 0o755); err != nil {
		f.Fatal(err)
	}
	if err := os.Symlink(tmp, filepath.Join(root, "escape")); err != nil {
		f.Fatal(err)
	}
	o := vfs.LocalOpener{Root: root}
	base := filepath.Join(root, "disk.vmdk")
	f.Fuzz(func(t *testing.T, rel string) {
		p, err := o.Resolve(base, rel)
		if err != nil {
			if !errors.Is(err, vfs.ErrChain) {
				t.Fatalf("Resolve(%q): %v is not ErrChain", rel, err)
			}
			return
		}
		r, err := filepath.Rel(root, p)
		if err != nil || r == ".." || strings.HasPrefix(r, "../") || !vfs.Within(root, p) {
			t.Fatalf("Resolve(%q) = %q: outside %s", rel, p, root)
		}
		if r == "escape" || strings.HasPrefix(r, "escape/") {
			t.Fatalf("Resolve(%q) = %q: through the link out", rel, p)
		}
	})
}
