package main

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/h2kvm/h2kvm/pipeline/target/all"
)

// TestMigrateTargetFlag: --target offers exactly the registered targets, defaults to the
// registry's default, and an unknown one is bad usage.
func TestMigrateTargetFlag(t *testing.T) {
	f, ok := reflect.TypeOf(MigrateCmd{}).FieldByName("Target")
	if !ok {
		t.Fatal("MigrateCmd has no Target")
	}
	if got := strings.Split(f.Tag.Get("enum"), ","); !slices.Equal(got, all.Names()) {
		t.Errorf("--target enum %v, registered targets %v", got, all.Names())
	}
	if d := f.Tag.Get("default"); d != all.Default {
		t.Errorf("--target default %q, want %q", d, all.Default)
	}
	code, out, _ := runCLI(t, context.Background(), "migrate", "--help")
	if code != 0 || !strings.Contains(out, "--target") || !strings.Contains(out, "-o") || !strings.Contains(out, "libvirt") {
		t.Errorf("migrate --help: exit %d\n%s", code, out)
	}
	code, _, errOut := runCLI(t, context.Background(), "migrate", "x.vmdk", "--output", t.TempDir(), "-o", "vmware")
	if code != exitBadInput {
		t.Errorf("unknown target: exit %d, want %d (%s)", code, exitBadInput, errOut)
	}
}

// TestMigrateNameValidated: --name becomes file names in OUTPUT and the libvirt domain name, so
// a name that is a path (or "..", or odd characters) is bad usage before anything is read or
// written.
func TestMigrateNameValidated(t *testing.T) {
	out := t.TempDir()
	for _, name := range []string{"../x", "..", "a/b", `a\b`, ".hidden", "-x", "a b", "a\x00b", strings.Repeat("n", 201)} {
		code, _, errOut := runCLI(t, context.Background(), "migrate", "x.vmdk", "--output", out, "--name", name)
		if code != exitBadInput || !strings.Contains(errOut, "--name") {
			t.Errorf("--name %q: exit %d, want %d and a message naming --name: %s", name, code, exitBadInput, errOut)
		}
	}
	for _, name := range []string{"web01", "db-2.prod", "A_b.c-1"} {
		if err := validName(name); err != nil {
			t.Errorf("validName(%q): %v", name, err)
		}
	}
}

// TestMigrateOutsideDisks: a .vmx naming a disk outside its folder stops FETCH as bad input
// naming --allow-outside-disks; with the flag the disk is used (and here fails later, being no
// VMDK).
func TestMigrateOutsideDisks(t *testing.T) {
	tmp := t.TempDir()
	vmDir := filepath.Join(tmp, "vm")
	if err := os.Mkdir(vmDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "host.vmdk"), []byte("not a disk"), 0o644); err != nil {
		t.Fatal(err)
	}
	vmx := filepath.Join(vmDir, "x.vmx")
	if err := os.WriteFile(vmx, []byte("memSize = \"512\"\nscsi0.present = \"TRUE\"\nscsi0:0.present = \"TRUE\"\nscsi0:0.fileName = \"../host.vmdk\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runCLI(t, context.Background(), "migrate", vmx, "--output", filepath.Join(tmp, "out1"))
	if code != exitBadInput || !strings.Contains(errOut, "--allow-outside-disks") {
		t.Fatalf("outside disk: exit %d, want %d naming --allow-outside-disks: %s", code, exitBadInput, errOut)
	}
	_, _, errOut = runCLI(t, context.Background(), "migrate", vmx, "--output", filepath.Join(tmp, "out2"), "--allow-outside-disks")
	if strings.Contains(errOut, "outside the VM's folder") {
		t.Fatalf("--allow-outside-disks: still refused: %s", errOut)
	}
}
