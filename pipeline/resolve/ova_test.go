package resolve

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/h2kvm/h2kvm/internal/testenv"
	"github.com/h2kvm/h2kvm/pipeline/resolve/ovf"
	"github.com/h2kvm/h2kvm/vfs"
	"github.com/h2kvm/h2kvm/vfs/source/tarsrc"
)

// ovaFixture builds web.ova: an OVF, a manifest, and a 6 MiB streamOptimized disk made by
// qemu-img; it returns the archive, the disk file, and the members.
func ovaFixture(t *testing.T) (ova, disk string, members []member) {
	t.Helper()
	testenv.NeedTool(t, "qemu-img")
	testenv.NeedTool(t, "qemu-io")
	dir := t.TempDir()
	run(t, dir, "qemu-img", "create", "-q", "-f", "raw", "src.raw", "6M")
	run(t, dir, "qemu-io", "-f", "raw", "-c", "write -P 0x5a 0 1M", "-c", "write -P 0xa5 3M 700k", "-c", "write -P 0x01 6143k 1k", "src.raw")
	run(t, dir, "qemu-img", "convert", "-O", "vmdk", "-o", "subformat=streamOptimized", "src.raw", "web-disk1.vmdk")
	disk = filepath.Join(dir, "web-disk1.vmdk")
	data, err := os.ReadFile(disk)
	if err != nil {
		t.Fatal(err)
	}
	desc := member{"web.ovf", ovfXML("web", "web-disk1.vmdk", int64(len(data)), 6<<20)}
	d := member{"web-disk1.vmdk", data}
	members = []member{desc, {"web.mf", manifest(desc, d)}, d}
	ova = filepath.Join(dir, "web.ova")
	packTar(t, ova, members...)
	return ova, disk, members
}

func TestResolveOVA(t *testing.T) {
	ova, disk, members := ovaFixture(t)
	ctx := context.Background()
	var warnings []string
	vm, err := Resolve(ctx, ova, Options{Warn: func(m string) { warnings = append(warnings, m) }})
	if err != nil {
		t.Fatal(err)
	}
	if vm.Name != "web" || vm.CPUs != 2 || vm.MemoryMiB != 2048 || vm.Firmware != "efi" ||
		len(vm.NICs) != 1 || vm.NICs[0].MAC != "00:50:56:01:02:03" || vm.NICs[0].Model != "vmxnet3" || vm.NICs[0].Network != "VM Network" {
		t.Fatalf("VM %+v", vm)
	}
	want := tarsrc.Location(ova, "web-disk1.vmdk")
	if len(vm.Disks) != 1 || vm.Disks[0].Source != want || vm.Disks[0].Controller != "scsi" || vm.Disks[0].Unit != "0:0" || vm.Disks[0].Capacity != 6<<20 {
		t.Fatalf("disks %+v, want source %s", vm.Disks, want)
	}
	// By default the disk's digest is left for the migration to check, with no warning.
	sum := sha256.Sum256(members[2].data)
	if m := vm.Disks[0].Manifest; len(warnings) != 0 || m == nil || m.File != "web-disk1.vmdk" || m.Alg != "SHA256" || m.Hex != hex.EncodeToString(sum[:]) || m.State != "unverified" {
		t.Fatalf("default: warnings %v, manifest digest %+v, want %x", warnings, vm.Disks[0].Manifest, sum)
	}
	warnings = nil
	vm2, err := Resolve(ctx, ova, Options{VerifyDisks: true, Warn: func(m string) { warnings = append(warnings, m) }})
	if err != nil || len(warnings) != 0 || vm2.Disks[0].Manifest == nil || vm2.Disks[0].Manifest.State != "verified" {
		t.Fatalf("VerifyDisks: %v %v %+v", err, warnings, vm2.Disks[0].Manifest)
	}
	warnings = nil
	vm3, err := Resolve(ctx, ova, Options{NoVerifyDisks: true, Warn: func(m string) { warnings = append(warnings, m) }})
	if err != nil || len(warnings) != 1 || !strings.Contains(warnings[0], "not verified") || vm3.Disks[0].Manifest == nil || vm3.Disks[0].Manifest.State != "off" {
		t.Fatalf("NoVerifyDisks: %v, warnings %v (want one saying the disk was not verified), %+v", err, warnings, vm3.Disks[0].Manifest)
	}

	// The disk read in place through tarsrc and vmdk equals qemu-img's reading of the file.
	got, c, err := readChain(t, tarsrc.NewOpener(vfs.LocalOpener{}), vm.Disks[0].Source)
	if err != nil {
		t.Fatalf("vmdk.Open through tarsrc: %v", err)
	}
	defer c.Close()
	if ref := rawOf(t, disk); !bytes.Equal(got, ref) {
		t.Fatalf("disk bytes read in the OVA differ from qemu-img convert -O raw (%d vs %d bytes)", len(got), len(ref))
	}
}

func TestOVATamperedDescriptorRefused(t *testing.T) {
	ova, _, members := ovaFixture(t)
	members[0].data = bytes.Replace(members[0].data, []byte("<rasd:VirtualQuantity>2</rasd:VirtualQuantity>"), []byte("<rasd:VirtualQuantity>8</rasd:VirtualQuantity>"), 1)
	packTar(t, ova, members...)
	_, err := Resolve(context.Background(), ova, Options{})
	if !errors.Is(err, ovf.ErrDigest) || !strings.Contains(err.Error(), "web.ovf") {
		t.Fatalf("got %v, want a digest mismatch on web.ovf", err)
	}
}

func TestOVATamperedDiskFoundOnlyWhenVerified(t *testing.T) {
	ova, _, members := ovaFixture(t)
	d := members[2].data
	d[len(d)/2] ^= 0xff
	packTar(t, ova, members...)
	if _, err := Resolve(context.Background(), ova, Options{VerifyDisks: true}); !errors.Is(err, ovf.ErrDigest) || !strings.Contains(err.Error(), "web-disk1.vmdk") {
		t.Fatalf("VerifyDisks: got %v, want a digest mismatch on the disk", err)
	}
	// Without VerifyDisks the resolver reads no disk: the digest is handed on to be checked.
	vm, err := Resolve(context.Background(), ova, Options{})
	if err != nil || vm.Disks[0].Manifest == nil || vm.Disks[0].Manifest.State != "unverified" {
		t.Fatalf("default resolve: %v %+v (want success with the digest to check)", err, vm)
	}
	var warnings []string
	if _, err := Resolve(context.Background(), ova, Options{NoVerifyDisks: true, Warn: func(m string) { warnings = append(warnings, m) }}); err != nil || len(warnings) == 0 {
		t.Fatalf("NoVerifyDisks resolve: %v %v (want success with a warning)", err, warnings)
	}
}

func TestOVAUnsafeMemberRefused(t *testing.T) {
	ova, _, members := ovaFixture(t)
	packTar(t, ova, append(members, member{"../x", []byte("evil")})...)
	if _, err := Resolve(context.Background(), ova, Options{}); !errors.Is(err, tarsrc.ErrUnsafeMember) || !strings.Contains(err.Error(), "../x") {
		t.Fatalf("got %v", err)
	}
}

func TestOVF(t *testing.T) {
	ova, disk, members := ovaFixture(t)
	_ = ova
	dir := filepath.Dir(disk)
	for _, m := range members[:2] {
		os.WriteFile(filepath.Join(dir, m.name), m.data, 0o644)
	}
	vm, err := Resolve(context.Background(), filepath.Join(dir, "web.ovf"), Options{VerifyDisks: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(vm.Disks) != 1 || vm.Disks[0].Source != disk || vm.CPUs != 2 {
		t.Fatalf("VM %+v", vm)
	}
}

func TestGovmomiSampleOVA(t *testing.T) {
	out, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		t.Skipf("go env: %v", err)
	}
	ova := filepath.Join(strings.TrimSpace(string(out)), "github.com/vmware/govmomi@v0.53.0/vapi/library/testdata/ttylinux-pc_i486-16.1.ova")
	if _, err := os.Stat(ova); err != nil {
		t.Skipf("govmomi sample OVA not in the module cache: %v", err)
	}
	var warnings []string
	vm, err := Resolve(context.Background(), ova, Options{Warn: func(m string) { warnings = append(warnings, m) }})
	if err != nil {
		t.Fatal(err)
	}
	if vm.Name != "ttylinux-pc_i486-16.1" || vm.CPUs != 1 || vm.MemoryMiB != 32 || vm.Firmware != "efi" ||
		len(vm.NICs) != 1 || vm.NICs[0].Model != "e1000" || len(vm.Disks) != 1 || vm.Disks[0].Controller != "ide" || vm.Disks[0].Capacity != 30<<20 {
		t.Fatalf("VM %+v", vm)
	}
	var cut bool
	for _, w := range warnings {
		cut = cut || strings.Contains(w, "1048576 bytes but the descriptor declares 10595840")
	}
	if !cut {
		t.Fatalf("warnings %v: want one saying the disk file is cut short", warnings)
	}
	// Reading the cut disk fails clearly, naming the member.
	_, c, err := readChain(t, tarsrc.NewOpener(vfs.LocalOpener{}), vm.Disks[0].Source)
	if c != nil {
		c.Close()
	}
	if !errors.Is(err, vfs.ErrTruncated) || !strings.Contains(err.Error(), "ttylinux-pc_i486-16.1-disk1.vmdk") {
		t.Fatalf("reading the truncated disk: %v", err)
	}
	t.Log(err)
}
