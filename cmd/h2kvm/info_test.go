package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/h2kvm/h2kvm/vfs"
)

func infoQemuImg(t *testing.T, args ...string) {
	t.Helper()
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img not installed")
	}
	if out, err := exec.Command("qemu-img", args...).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestInfoOpensThroughRegistry runs `h2kvm info` on a VMDK (text and JSON) and on a qcow2,
// which no registered format reads.
func TestInfoOpensThroughRegistry(t *testing.T) {
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk.vmdk")
	infoQemuImg(t, "create", "-q", "-f", "vmdk", "-o", "subformat=monolithicSparse", disk, "8M")
	ctx := context.Background()

	var out bytes.Buffer
	g := &Globals{Log: slog.New(slog.DiscardHandler), Stdout: &out}
	if err := (&InfoCmd{Source: disk, JSON: true}).Run(ctx, g); err != nil {
		t.Fatal(err)
	}
	var ci vfs.ChainInfo
	if err := json.Unmarshal(out.Bytes(), &ci); err != nil {
		t.Fatalf("%v\n%s", err, out.Bytes())
	}
	if ci.Format != "vmdk" || ci.File != disk || len(ci.Links) != 1 || ci.VirtualSize != 8<<20 {
		t.Errorf("info --json = %+v", ci)
	}

	out.Reset()
	if err := (&InfoCmd{Source: disk}).Run(ctx, g); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "file format: vmdk\n") {
		t.Errorf("info text does not name the format:\n%s", out.String())
	}

	q := filepath.Join(dir, "disk.qcow2")
	infoQemuImg(t, "create", "-q", "-f", "qcow2", q, "8M")
	err := (&InfoCmd{Source: q}).Run(ctx, g)
	if !errors.Is(err, vfs.ErrUnknownFormat) {
		t.Fatalf("info on a qcow2: error %v, want ErrUnknownFormat", err)
	}
	if c := exitCode(err); c != 2 {
		t.Errorf("exit code %d, want 2", c)
	}
}
