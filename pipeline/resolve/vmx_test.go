package resolve

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/h2kvm/h2kvm/internal/testenv"
	"github.com/h2kvm/h2kvm/vfs"
)

// vmxFixture is a VM folder: a base disk with a snapshot delta (the .vmx names the delta, as
// VMware does while a snapshot exists) and a second disk in a subfolder.
func vmxFixture(t *testing.T, extra string) (dir string) {
	t.Helper()
	testenv.NeedTool(t, "qemu-img")
	testenv.NeedTool(t, "qemu-io")
	dir = t.TempDir()
	os.MkdirAll(filepath.Join(dir, "data"), 0o755)
	run(t, dir, "qemu-img", "create", "-q", "-f", "vmdk", "-o", "subformat=monolithicSparse", "web.vmdk", "8M")
	run(t, dir, "qemu-io", "-f", "vmdk", "-c", "write -P 0x11 0 2M", "web.vmdk")
	run(t, dir, "qemu-img", "create", "-q", "-f", "vmdk", "-b", "web.vmdk", "-F", "vmdk", "web-000001.vmdk")
	run(t, dir, "qemu-io", "-f", "vmdk", "-c", "write -P 0x22 1M 512k", "web-000001.vmdk")
	run(t, dir, "qemu-img", "create", "-q", "-f", "vmdk", "-o", "subformat=twoGbMaxExtentFlat", "data/data disk.vmdk", "2M")
	vmx := `.encoding = "UTF-8"
displayName = "web |22blue|22"
numvcpus = "2"
cpuid.coresPerSocket = "2"
memSize = "1024"
firmware = "efi"
uefi.secureBoot.enabled = "TRUE"
scsi0.present = "TRUE"
scsi0:0.present = "TRUE"
scsi0:0.fileName = "web-000001.vmdk"
sata0.present = "TRUE"
sata0:0.present = "TRUE"
sata0:0.deviceType = "cdrom-image"
sata0:0.fileName = "/iso/x.iso"
sata0:1.present = "TRUE"
sata0:1.fileName = "data/data disk.vmdk"
ethernet0.present = "TRUE"
ethernet0.virtualDev = "vmxnet3"
ethernet0.networkName = "VM Network"
ethernet0.addressType = "generated"
ethernet0.generatedAddress = "00:0c:29:12:34:56"
` + extra
	if err := os.WriteFile(filepath.Join(dir, "web.vmx"), []byte(vmx), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestResolveVMX(t *testing.T) {
	dir := vmxFixture(t, "")
	vm, err := Resolve(context.Background(), filepath.Join(dir, "web.vmx"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if vm.Name != `web "blue"` || vm.CPUs != 2 || vm.CoresPerSocket != 2 || vm.MemoryMiB != 1024 || vm.Firmware != "efi" || !vm.SecureBoot ||
		len(vm.NICs) != 1 || vm.NICs[0].MAC != "00:0c:29:12:34:56" {
		t.Fatalf("VM %+v", vm)
	}
	if len(vm.Disks) != 2 || vm.Disks[0].Source != filepath.Join(dir, "web-000001.vmdk") || vm.Disks[0].Unit != "0:0" ||
		vm.Disks[1].Source != filepath.Join(dir, "data", "data disk.vmdk") || vm.Disks[1].Controller != "sata" {
		t.Fatalf("disks %+v", vm.Disks)
	}
	// The delta's chain reaches the base and reads as qemu-img reads it.
	got, c, err := readChain(t, vfs.LocalOpener{}, vm.Disks[0].Source)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Len() != 2 {
		t.Fatalf("chain of %d links, want 2", c.Len())
	}
	if !bytes.Equal(got, rawOf(t, vm.Disks[0].Source)) {
		t.Fatal("chain bytes differ from qemu-img convert -O raw")
	}
}

func TestResolveVMXRelativePathAndAbsoluteFallback(t *testing.T) {
	dir := vmxFixture(t, "nvme0.present = \"TRUE\"\nnvme0:0.present = \"TRUE\"\nnvme0:0.fileName = \"/vmfs/volumes/ds1/web/web.vmdk\"\n")
	var warnings []string
	t.Chdir(dir)
	vm, err := Resolve(context.Background(), "web.vmx", Options{Warn: func(m string) { warnings = append(warnings, m) }})
	if err != nil {
		t.Fatal(err)
	}
	if len(vm.Disks) != 3 || vm.Disks[2].Controller != "nvme" || vm.Disks[2].Source != filepath.Join(dir, "web.vmdk") {
		t.Fatalf("disks %+v", vm.Disks)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "/vmfs/volumes/ds1/web/web.vmdk") {
		t.Fatalf("warnings %v", warnings)
	}
}

func TestResolveVMXErrors(t *testing.T) {
	dir := vmxFixture(t, "scsi0:1.present = \"TRUE\"\nscsi0:1.fileName = \"missing.vmdk\"\n")
	_, err := Resolve(context.Background(), filepath.Join(dir, "web.vmx"), Options{})
	if !errors.Is(err, vfs.ErrNotFound) || !strings.Contains(err.Error(), "scsi0:1") {
		t.Fatalf("missing disk: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "bad.vmx"), []byte("numvcpus = \"lots\"\n"), 0o644)
	if _, err := Resolve(context.Background(), filepath.Join(dir, "bad.vmx"), Options{}); err == nil || !strings.Contains(err.Error(), "numvcpus") {
		t.Fatalf("bad vmx: %v", err)
	}
	if _, err := Resolve(context.Background(), filepath.Join(dir, "nope.vmx"), Options{}); !errors.Is(err, vfs.ErrNotFound) {
		t.Fatalf("missing vmx: %v", err)
	}
}

func TestResolvePlainDisk(t *testing.T) {
	for loc, name := range map[string]string{
		"/srv/web-flat.vmdk": "web-flat",
		"https://esx/folder/web/web.vmdk?dcPath=ha-datacenter&dsName=ds1": "web",
		"nbd+unix:///export?socket=/run/x.sock":                           "export",
		"ssh://root@esx/vmfs/volumes/ds1/web/web.vmdk":                    "web",
	} {
		vm, err := Resolve(context.Background(), loc, Options{})
		if err != nil || vm.Name != name || len(vm.Disks) != 1 || vm.Disks[0].Source != loc || vm.CPUs != 0 {
			t.Fatalf("%s: %+v %v", loc, vm, err)
		}
	}
	if KindOf("https://esx/folder/web/web.vmx?dcPath=d&dsName=s") != KindVMX || KindOf("vsphere://vc/DC/vm/x") != KindVSphere || KindOf("X.OVA") != KindOVA {
		t.Fatal("KindOf")
	}
}
