package resolve

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/h2kvm/h2kvm/vfs"
)

// outsideFixture is a VM folder vm/ next to a folder other/ holding host.vmdk, a file the VM
// folder must not be able to name, and vm/own.vmdk, a disk of its own.
func outsideFixture(t *testing.T) (vmDir, host string) {
	t.Helper()
	tmp := t.TempDir()
	vmDir, other := filepath.Join(tmp, "vm"), filepath.Join(tmp, "other")
	for _, d := range []string{vmDir, other} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	host = filepath.Join(other, "host.vmdk")
	for _, f := range []string{host, filepath.Join(vmDir, "own.vmdk")} {
		if err := os.WriteFile(f, []byte("# Disk DescriptorFile\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return vmDir, host
}

func writeVMX(t *testing.T, dir, fileName string) string {
	t.Helper()
	p := filepath.Join(dir, "x.vmx")
	vmx := "displayName = \"x\"\nmemSize = \"512\"\nscsi0.present = \"TRUE\"\nscsi0:0.present = \"TRUE\"\nscsi0:0.fileName = \"" + fileName + "\"\n"
	if err := os.WriteFile(p, []byte(vmx), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestVMXDisksConfined: a .vmx naming a host file (absolute, with "..", or through a symlink in
// its folder) is refused with ErrOutside; AllowOutsideDisks lets it through.
func TestVMXDisksConfined(t *testing.T) {
	vmDir, host := outsideFixture(t)
	if err := os.Symlink(host, filepath.Join(vmDir, "link.vmdk")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{host, "../other/host.vmdk", "link.vmdk"} {
		vmx := writeVMX(t, vmDir, name)
		vm, err := Resolve(context.Background(), vmx, Options{})
		if !errors.Is(err, ErrOutside) || !errors.Is(err, vfs.ErrChain) || !strings.Contains(err.Error(), "--allow-outside-disks") {
			t.Errorf("fileName %q: want ErrOutside, got %v (disks %+v)", name, err, vm)
		}
		vm, err = Resolve(context.Background(), vmx, Options{AllowOutsideDisks: true})
		if err != nil || len(vm.Disks) != 1 {
			t.Errorf("fileName %q allowed: %+v, %v", name, vm, err)
		}
	}
	// An absolute name outside still finds the disk of the same base name in the folder.
	var warnings []string
	vm, err := Resolve(context.Background(), writeVMX(t, vmDir, "/vmfs/volumes/ds1/x/own.vmdk"), Options{Warn: func(m string) { warnings = append(warnings, m) }})
	if err != nil || vm.Disks[0].Source != filepath.Join(vmDir, "own.vmdk") || len(warnings) != 1 {
		t.Fatalf("fallback: %+v %v %q", vm, err, warnings)
	}
	vm, err = Resolve(context.Background(), writeVMX(t, vmDir, "own.vmdk"), Options{})
	if err != nil || vm.Disks[0].Source != filepath.Join(vmDir, "own.vmdk") {
		t.Fatalf("own disk: %+v %v", vm, err)
	}
}

// TestOVFDisksConfined: an OVF whose disk file is a symlink out of its folder is refused.
func TestOVFDisksConfined(t *testing.T) {
	vmDir, host := outsideFixture(t)
	if err := os.Symlink(host, filepath.Join(vmDir, "disk1.vmdk")); err != nil {
		t.Fatal(err)
	}
	ovfPath := filepath.Join(vmDir, "x.ovf")
	if err := os.WriteFile(ovfPath, ovfXML("x", "disk1.vmdk", 0, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Resolve(context.Background(), ovfPath, Options{}); !errors.Is(err, ErrOutside) {
		t.Fatalf("want ErrOutside, got %v", err)
	}
	if vm, err := Resolve(context.Background(), ovfPath, Options{AllowOutsideDisks: true}); err != nil || len(vm.Disks) != 1 {
		t.Fatalf("allowed: %+v %v", vm, err)
	}
}

func TestConfinedRemote(t *testing.T) {
	const ds = "https://esx/folder/web/web.vmx?dcPath=DC&dsName=ds1"
	for disk, want := range map[string]bool{
		"https://esx/folder/web/web.vmdk?dcPath=DC&dsName=ds1":  true,
		"https://esx/folder/other/x.vmdk?dcPath=DC&dsName=ds1":  true, // same datastore
		"https://esx/folder/x.vmdk?dcPath=DC&dsName=ds2":        false,
		"https://esx/folder/x.vmdk?dcPath=DC2&dsName=ds1":       false,
		"https://evil/folder/web/web.vmdk?dcPath=DC&dsName=ds1": false,
		"http://esx/folder/web/web.vmdk?dcPath=DC&dsName=ds1":   false,
		"https://esx/web/web.vmdk?dcPath=DC&dsName=ds1":         false,
		"https://esx/folder/../etc/x.vmdk?dcPath=DC&dsName=ds1": false,
		"/etc/x.vmdk": false,
	} {
		if got := confined(ds, disk); got != want {
			t.Errorf("confined(%s, %s) = %v", ds, disk, got)
		}
	}
	const plain = "https://h/vms/web/web.vmx"
	for disk, want := range map[string]bool{
		"https://h/vms/web/web.vmdk":        true,
		"https://h/vms/web/sub/d.vmdk":      true,
		"https://h/vms/other/d.vmdk":        false,
		"https://h/vms/web/../other/d.vmdk": false,
		"https://h/vms/webx/d.vmdk":         false,
	} {
		if got := confined(plain, disk); got != want {
			t.Errorf("confined(%s, %s) = %v", plain, disk, got)
		}
	}
}
