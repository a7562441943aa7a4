package all_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/h2kvm/h2kvm/vfs"
	"github.com/h2kvm/h2kvm/vfs/diskfmt/all"
	"github.com/h2kvm/h2kvm/vfs/vmdk"
)

func qemuImg(t *testing.T, dir string, args ...string) {
	t.Helper()
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img not installed")
	}
	cmd := exec.Command("qemu-img", args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("qemu-img %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func TestFormatsStartWithVMDK(t *testing.T) {
	f := all.Formats()
	if len(f) == 0 || f[0].Name() != "vmdk" {
		t.Fatalf("Formats() = %v, want vmdk first", f)
	}
	f[0] = nil
	if all.Formats()[0] == nil {
		t.Fatal("Formats shares its slice between calls")
	}
}

// TestOpenDiskVMDK opens VMDKs of every kind qemu-img writes, a delta chain and a
// VMware-made file through the registry, and checks they are opened as VMDK chains.
func TestOpenDiskVMDK(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	for _, sub := range []string{"monolithicSparse", "monolithicFlat", "streamOptimized", "twoGbMaxExtentSparse"} {
		qemuImg(t, dir, "create", "-q", "-f", "vmdk", "-o", "subformat="+sub, sub+".vmdk", "8M")
	}
	qemuImg(t, dir, "create", "-q", "-f", "vmdk", "-b", "monolithicSparse.vmdk", "-F", "vmdk", "delta.vmdk")
	files := map[string]int{ // name: links
		filepath.Join(dir, "monolithicSparse.vmdk"):     1,
		filepath.Join(dir, "monolithicFlat.vmdk"):       1,
		filepath.Join(dir, "streamOptimized.vmdk"):      1,
		filepath.Join(dir, "twoGbMaxExtentSparse.vmdk"): 1,
		filepath.Join(dir, "delta.vmdk"):                2,
	}
	if _, err := os.Stat("/work/shared/testdata/ext2.vmdk"); err == nil {
		files["/work/shared/testdata/ext2.vmdk"] = 1
	}
	for name, links := range files {
		t.Run(filepath.Base(name), func(t *testing.T) {
			d, err := vfs.OpenDisk(ctx, all.Formats(), vfs.LocalOpener{}, name, vfs.OpenOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			c, ok := d.(*vmdk.Chain)
			if !ok {
				t.Fatalf("OpenDisk returned %T, want *vmdk.Chain", d)
			}
			ci, err := d.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if ci.Format != "vmdk" || len(ci.Links) != links || c.Len() != links || ci.VirtualSize != d.Size() {
				t.Errorf("Info: format %q, %d links, size %d; want vmdk, %d links, size %d", ci.Format, len(ci.Links), ci.VirtualSize, links, d.Size())
			}
			buf := make([]byte, 4096)
			if _, err := d.ReadAt(ctx, buf, 0); err != nil {
				t.Fatal(err)
			}
			// OpenDisk gives the same chain as vmdk.Open.
			want, err := vmdk.Open(ctx, vfs.LocalOpener{}, name, vmdk.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer want.Close()
			wi, err := want.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			a, _ := json.Marshal(ci)
			b, _ := json.Marshal(wi)
			if !bytes.Equal(a, b) {
				t.Errorf("Info through OpenDisk:\n%s\nthrough vmdk.Open:\n%s", a, b)
			}
		})
	}
}

// TestOpenDiskIgnoreCIDMismatch checks the generic option reaches vmdk.Open.
func TestOpenDiskIgnoreCIDMismatch(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	qemuImg(t, dir, "create", "-q", "-f", "vmdk", "-o", "subformat=monolithicFlat", "base.vmdk", "8M")
	qemuImg(t, dir, "create", "-q", "-f", "vmdk", "-b", "base.vmdk", "-F", "vmdk", "top.vmdk")
	base := filepath.Join(dir, "base.vmdk")
	b, err := os.ReadFile(base)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(b, []byte("\nCID="))
	if i < 0 {
		t.Fatalf("%s has no CID line", base)
	}
	copy(b[i+5:], "0badc1d0")
	if err := os.WriteFile(base, b, 0o644); err != nil {
		t.Fatal(err)
	}
	top := filepath.Join(dir, "top.vmdk")
	if _, err := vfs.OpenDisk(ctx, all.Formats(), vfs.LocalOpener{}, top, vfs.OpenOptions{}); !errors.Is(err, vfs.ErrChain) {
		t.Fatalf("CID mismatch: error %v, want ErrChain", err)
	}
	d, err := vfs.OpenDisk(ctx, all.Formats(), vfs.LocalOpener{}, top, vfs.OpenOptions{IgnoreCIDMismatch: true})
	if err != nil {
		t.Fatalf("IgnoreCIDMismatch: %v", err)
	}
	defer d.Close()
	ci, err := d.Info(ctx)
	if err != nil || len(ci.Warnings) == 0 {
		t.Errorf("Info = %+v, %v; want a CID warning", ci, err)
	}
}

// TestOpenDiskRefusesOtherFormats checks files in no registered format are refused with
// vfs.ErrUnknownFormat.
func TestOpenDiskRefusesOtherFormats(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	qemuImg(t, dir, "create", "-q", "-f", "qcow2", "disk.qcow2", "8M")
	qemuImg(t, dir, "create", "-q", "-f", "raw", "disk.raw", "1M")
	junk := make([]byte, 64<<10)
	rand.Read(junk)
	if err := os.WriteFile(filepath.Join(dir, "random.vmdk"), junk, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"disk.qcow2", "disk.raw", "random.vmdk"} {
		t.Run(n, func(t *testing.T) {
			name := filepath.Join(dir, n)
			d, err := vfs.OpenDisk(ctx, all.Formats(), vfs.LocalOpener{}, name, vfs.OpenOptions{})
			if err == nil {
				d.Close()
				t.Fatal("opened")
			}
			if !errors.Is(err, vfs.ErrUnknownFormat) || !strings.Contains(err.Error(), name) {
				t.Errorf("error %q: want ErrUnknownFormat naming %s", err, name)
			}
		})
	}
}
