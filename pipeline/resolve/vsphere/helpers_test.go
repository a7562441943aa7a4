package vsphere

import (
	"context"
	"crypto/tls"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/h2kvm/h2kvm/vfs/source/httpsrc"
)

const (
	testUser = "admin"
	testPass = "s3cret pass"
	vmName   = "DC0_H0_VM0"
)

// requireTool skips when an external tool is absent, unless H2KVM_REQUIRE_TOOLS is set (CI).
func requireTool(t testing.TB, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		if os.Getenv("H2KVM_REQUIRE_TOOLS") != "" {
			t.Fatalf("%s is required (H2KVM_REQUIRE_TOOLS is set): %v", name, err)
		}
		t.Skipf("%s not installed", name)
	}
}

func run(t testing.TB, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", args, err, out)
	}
}

// sim is an in-process vCenter whose VM DC0_H0_VM0 has a real disk: a qemu-img delta over a
// monolithicSparse base, in folder h2kvm/ of datastore LocalDS_0.
type sim struct {
	model  *simulator.Model
	server *simulator.Server
	dsDir  string // local folder of LocalDS_0
	thumb  string
}

func startSim(t *testing.T) *sim {
	t.Helper()
	requireTool(t, "qemu-img")
	requireTool(t, "qemu-io")
	t.Setenv("TMPDIR", t.TempDir())
	m := simulator.VPX()
	if err := m.Create(); err != nil {
		t.Fatal(err)
	}
	m.Service.Listen = &url.URL{Host: "127.0.0.1:0", User: url.UserPassword(testUser, testPass)}
	m.Service.TLS = new(tls.Config)
	srv := m.Service.NewServer()
	t.Cleanup(func() { srv.Close(); m.Remove() })
	ds := m.Service.Context.Map.Any("Datastore").(*simulator.Datastore)
	s := &sim{model: m, server: srv, dsDir: ds.Summary.Url, thumb: httpsrc.ThumbprintSHA256(srv.Certificate().Raw)}
	dir := filepath.Join(s.dsDir, "h2kvm")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, dir, "qemu-img", "create", "-q", "-f", "vmdk", "-o", "subformat=monolithicSparse", "base.vmdk", "16M")
	run(t, dir, "qemu-io", "-f", "vmdk", "-c", "write -P 0x11 0 1M", "base.vmdk")
	run(t, dir, "qemu-img", "create", "-q", "-f", "vmdk", "-b", "base.vmdk", "-F", "vmdk", "delta.vmdk")
	run(t, dir, "qemu-io", "-f", "vmdk", "-c", "write -P 0x22 512k 1M", "delta.vmdk")
	s.setDisk(t, "[LocalDS_0] h2kvm/delta.vmdk", true)
	return s
}

func (s *sim) host() string { return s.server.URL.Host }

func (s *sim) opts() Options {
	return Options{Password: testPass, TLS: httpsrc.TLSOptions{Thumbprints: []string{s.thumb}}}
}

func (s *sim) loc(rest string) string { return "vsphere://" + testUser + "@" + s.host() + rest }

// vm returns the test VM through a fresh session (independent of the code under test's path).
func (s *sim) vm(t *testing.T) (*object.VirtualMachine, *Client) {
	t.Helper()
	ctx := context.Background()
	l, _ := ParseLocation(s.loc("/DC0/vm/" + vmName))
	c, err := Login(ctx, l, s.opts())
	if err != nil {
		t.Fatal(err)
	}
	vm, err := find.NewFinder(c.VC).VirtualMachine(ctx, "/DC0/vm/"+vmName)
	if err != nil {
		t.Fatal(err)
	}
	return vm, c
}

// setDisk makes the VM's only disk point at file (replacing the simulator's own disk when
// replace is set, else changing the backing's file name in place).
func (s *sim) setDisk(t *testing.T, file string, replace bool) {
	t.Helper()
	ctx := context.Background()
	vm, c := s.vm(t)
	defer c.Logout(ctx, Options{})
	devs, err := vm.Device(ctx)
	if err != nil {
		t.Fatal(err)
	}
	old := devs.SelectByType((*types.VirtualDisk)(nil))[0].(*types.VirtualDisk)
	var spec types.VirtualMachineConfigSpec
	if replace {
		disk := &types.VirtualDisk{
			VirtualDevice: types.VirtualDevice{
				Key: -1, ControllerKey: old.ControllerKey, UnitNumber: types.NewInt32(1),
				Backing: &types.VirtualDiskFlatVer2BackingInfo{
					VirtualDeviceFileBackingInfo: types.VirtualDeviceFileBackingInfo{FileName: file},
					DiskMode:                     string(types.VirtualDiskModePersistent),
				},
			},
			CapacityInKB: 16 << 10,
		}
		spec.DeviceChange = []types.BaseVirtualDeviceConfigSpec{
			&types.VirtualDeviceConfigSpec{Operation: types.VirtualDeviceConfigSpecOperationRemove, Device: old},
			&types.VirtualDeviceConfigSpec{Operation: types.VirtualDeviceConfigSpecOperationAdd, Device: disk},
		}
	} else {
		old.Backing.(*types.VirtualDiskFlatVer2BackingInfo).FileName = file
		spec.DeviceChange = []types.BaseVirtualDeviceConfigSpec{
			&types.VirtualDeviceConfigSpec{Operation: types.VirtualDeviceConfigSpecOperationEdit, Device: old},
		}
	}
	task, err := vm.Reconfigure(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Wait(ctx); err != nil {
		t.Fatal(err)
	}
}
