package main

import (
	"context"
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
