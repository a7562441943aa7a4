package vsphere

import (
	"context"
	"testing"
	"time"

	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/h2kvm/h2kvm/internal/testenv"
	"github.com/h2kvm/h2kvm/vfs/source/httpsrc"
	"github.com/h2kvm/h2kvm/vfs/source/retry"
)

// fastRetry keeps the retries of a login to an unreachable host short.
var fastRetry = retry.Policy{Attempts: 3, BaseDelay: 5 * time.Millisecond, MaxDelay: 20 * time.Millisecond}

const (
	testUser = "admin"
	testPass = "s3cret pass"
	vmName   = "DC0_H0_VM0"
)

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
	testenv.NeedTool(t, "qemu-img", "qemu-io")
	v := testenv.StartVCSim(t, testUser, testPass)
	s := &sim{model: v.Model, server: v.Server, dsDir: v.DSDir, thumb: v.Thumbprint}
	dir := v.Folder(t, "h2kvm")
	testenv.Run(t, dir, "qemu-img", "create", "-q", "-f", "vmdk", "-o", "subformat=monolithicSparse", "base.vmdk", "16M")
	testenv.Run(t, dir, "qemu-io", "-f", "vmdk", "-c", "write -P 0x11 0 1M", "base.vmdk")
	testenv.Run(t, dir, "qemu-img", "create", "-q", "-f", "vmdk", "-b", "base.vmdk", "-F", "vmdk", "delta.vmdk")
	testenv.Run(t, dir, "qemu-io", "-f", "vmdk", "-c", "write -P 0x22 512k 1M", "delta.vmdk")
	s.setDisk(t, "[LocalDS_0] h2kvm/delta.vmdk", true)
	return s
}

func (s *sim) host() string { return s.server.URL.Host }

func (s *sim) opts() Options {
	return Options{Password: testPass, TLS: httpsrc.TLSOptions{Thumbprints: []string{s.thumb}}, Retry: fastRetry}
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
