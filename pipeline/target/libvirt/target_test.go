package libvirt

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/h2kvm/h2kvm/pipeline/machine"
	"github.com/h2kvm/h2kvm/pipeline/target"
)

// TestTargetWrite: the target writes OUTPUT/NAME.xml for the input, with the input's name,
// firmware, domain type and disks, and the schema accepts it.
func TestTargetWrite(t *testing.T) {
	dir := t.TempDir()
	in := target.Input{
		VM: machine.VM{Name: "source-name", CPUs: 2, MemoryMiB: 1024,
			NICs: []machine.NIC{{MAC: "00:50:56:01:02:03"}}},
		Name: "web01", Disks: []string{"/srv/web01-disk0.raw", "/srv/web01-disk1.raw"}, Format: "raw",
		Firmware: "efi", KVM: true, OutputDir: dir,
	}
	tg := New()
	res, err := tg.Write(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(dir, "web01.xml")
	if res.Target != "libvirt" || res.Definition != want || len(res.Files) != 1 || res.Files[0] != want {
		t.Fatalf("result %+v", res)
	}
	b, err := os.ReadFile(want)
	if err != nil {
		t.Fatal(err)
	}
	x := string(b)
	for _, s := range []string{`type="kvm"`, "<name>web01</name>", "/srv/web01-disk0.raw", `dev="vdb"`, `type="raw"`,
		"OVMF_CODE", "/srv/web01_VARS.fd", "00:50:56:01:02:03"} {
		if !strings.Contains(x, s) {
			t.Errorf("domain lacks %s:\n%s", s, x)
		}
	}
	if _, err := json.Marshal(res); err != nil {
		t.Error(err)
	}

	if _, err := exec.LookPath("virt-xml-validate"); err != nil {
		t.Skip("virt-xml-validate not installed")
	}
	if err := tg.Validate(context.Background(), res); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(want, []byte("<domain/>\n"), 0o644)
	if err := tg.Validate(context.Background(), res); err == nil {
		t.Error("an invalid domain validated")
	}
}

func TestTargetWriteErrors(t *testing.T) {
	tg := New()
	ctx := context.Background()
	if _, err := tg.Write(ctx, target.Input{Name: "x", OutputDir: t.TempDir()}); err == nil {
		t.Error("no disks: no error")
	}
	if _, err := tg.Write(ctx, target.Input{Name: "x", Disks: []string{"/a"}, Firmware: "coreboot", OutputDir: t.TempDir()}); err == nil {
		t.Error("unknown firmware: no error")
	}
	if err := tg.Validate(ctx, target.Result{Target: "other", Definition: "/x"}); err == nil {
		t.Error("a foreign result validated")
	}
	if _, err := tg.Write(ctx, target.Input{Name: "x", Disks: []string{"/a"}, OutputDir: "/nonexistent/dir"}); err == nil || errors.Unwrap(err) == nil {
		t.Errorf("unwritable folder: %v", err)
	}
}
