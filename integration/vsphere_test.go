package integration

import (
	"context"
	"encoding/json"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/h2kvm/h2kvm/internal/testenv"
	"github.com/h2kvm/h2kvm/vfs/source"
)

// TestMigrateVSphereVM migrates a VM named in vCenter (govmomi's simulator over TLS) whose disk
// is the debian-bios chain in the simulator's datastore. The VM is set up as users meet it: 2
// vCPUs, 1536 MiB, the guest's MAC on its vmxnet3 card, a snapshot "pre-migration" of the good
// chain, and after it a newer delta whose first MiB is zeroed (so the current state cannot
// boot). `h2kvm migrate vsphere://…/DC0/vm/NAME --snapshot pre-migration --boot-test` must read
// the snapshot's chain over the datastore's /folder endpoint, boot under libvirtd, and put the
// VM's MAC and sizing in the domain; the datastore files stay byte-identical.
func TestMigrateVSphereVM(t *testing.T) {
	needIntegration(t)
	needTool(t, "virsh", "virt-xml-validate", "qemu-img", "qemu-io")
	g := migrateGuest(t)
	const (
		user, pass = "migrator@vsphere.local", "s3cret-Pass"
		vmName     = "DC0_H0_VM0"
		mac        = "00:50:56:a1:b2:01" // the MAC the guest's .link file pins
	)
	ctx := context.Background()

	sim := testenv.StartVCSim(t, user, pass)
	sim.Link(t, "web03", g.Chain...)
	dir := sim.Folder(t, "web03")
	before := fileSums(t, g.Chain...)

	// Set the VM up through govmomi, independently of the code under test.
	u := *sim.Server.URL
	u.User = url.UserPassword(user, pass)
	c, err := govmomi.NewClient(ctx, &u, true)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Logout(ctx)
	vm, err := find.NewFinder(c.Client).VirtualMachine(ctx, "/DC0/vm/"+vmName)
	if err != nil {
		t.Fatal(err)
	}
	devs, err := vm.Device(ctx)
	if err != nil {
		t.Fatal(err)
	}
	oldDisk := devs.SelectByType((*types.VirtualDisk)(nil))[0].(*types.VirtualDisk)
	disk := &types.VirtualDisk{
		VirtualDevice: types.VirtualDevice{
			Key: -1, ControllerKey: oldDisk.ControllerKey, UnitNumber: types.NewInt32(0),
			Backing: &types.VirtualDiskFlatVer2BackingInfo{
				VirtualDeviceFileBackingInfo: types.VirtualDeviceFileBackingInfo{
					FileName: sim.DSPath("web03", filepath.Base(g.Top)),
				},
				DiskMode: string(types.VirtualDiskModePersistent),
			},
		},
		CapacityInKB: g.Manifest.VirtualSize >> 10,
	}
	nic := devs.SelectByType((*types.VirtualEthernetCard)(nil))[0]
	card := nic.(types.BaseVirtualEthernetCard).GetVirtualEthernetCard()
	card.AddressType = string(types.VirtualEthernetCardMacTypeManual)
	card.MacAddress = mac
	reconfigure(t, vm, types.VirtualMachineConfigSpec{
		NumCPUs: 2, MemoryMB: 1536,
		DeviceChange: []types.BaseVirtualDeviceConfigSpec{
			&types.VirtualDeviceConfigSpec{Operation: types.VirtualDeviceConfigSpecOperationRemove, Device: oldDisk},
			&types.VirtualDeviceConfigSpec{Operation: types.VirtualDeviceConfigSpecOperationAdd, Device: disk},
			&types.VirtualDeviceConfigSpec{Operation: types.VirtualDeviceConfigSpecOperationEdit, Device: nic},
		},
	})
	task, err := vm.CreateSnapshot(ctx, "pre-migration", "before the move to KVM", false, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	// After the snapshot the running VM writes to a new delta (as ESXi does); this one has lost
	// its boot sector, so migrating the current state instead of the snapshot cannot boot.
	runCmd(t, dir, "qemu-img", "create", "-q", "-f", "vmdk", "-b", filepath.Base(g.Top), "-F", "vmdk", "web03-000002.vmdk")
	runCmd(t, dir, "qemu-io", "-f", "vmdk", "-c", "write -z 0 1M", "web03-000002.vmdk")
	devs, err = vm.Device(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cur := devs.SelectByType((*types.VirtualDisk)(nil))[0].(*types.VirtualDisk)
	cur.Backing.(*types.VirtualDiskFlatVer2BackingInfo).FileName = sim.DSPath("web03", "web03-000002.vmdk")
	reconfigure(t, vm, types.VirtualMachineConfigSpec{DeviceChange: []types.BaseVirtualDeviceConfigSpec{
		&types.VirtualDeviceConfigSpec{Operation: types.VirtualDeviceConfigSpecOperationEdit, Device: cur},
	}})

	env := migrateEnv(
		source.EnvVSpherePassword+"="+pass,
		source.EnvTLSThumbprint+"="+sim.Thumbprint,
	)
	loc := "vsphere://" + url.User(user).String() + "@" + sim.Host() + "/DC0/vm/" + vmName

	// `vsphere ls` lists the VM with its sizing, its snapshot and its current chain.
	var listed []struct {
		Name      string                  `json:"name"`
		CPUs      int                     `json:"cpus"`
		MemoryMiB int                     `json:"memory_mib"`
		Snapshots []struct{ Name string } `json:"snapshots"`
		Disks     []struct {
			Chain []string `json:"chain"`
		} `json:"disks"`
	}
	ls := runH2KVM(t, env, "vsphere", "ls", "--json", "vsphere://"+url.User(user).String()+"@"+sim.Host()+"/DC0/vm")
	if err := json.Unmarshal([]byte(ls), &listed); err != nil {
		t.Fatalf("vsphere ls --json: %v\n%s", err, ls)
	}
	found := false
	for _, v := range listed {
		if v.Name != vmName {
			continue
		}
		found = true
		if v.CPUs != 2 || v.MemoryMiB != 1536 || len(v.Snapshots) != 1 || v.Snapshots[0].Name != "pre-migration" ||
			len(v.Disks) != 1 || len(v.Disks[0].Chain) == 0 || v.Disks[0].Chain[0] != sim.DSPath("web03", "web03-000002.vmdk") {
			t.Errorf("vsphere ls: %+v", v)
		}
	}
	if !found {
		t.Errorf("vsphere ls does not list %s:\n%s", vmName, tail(ls, 3000))
	}

	// info shows the snapshot's chain, not the current one.
	info := runH2KVM(t, env, "info", "--json", loc, "--snapshot", "pre-migration")
	if !strings.Contains(info, "/folder/web03/"+filepath.Base(g.Top)) || strings.Contains(info, "web03-000002") {
		t.Errorf("info --snapshot pre-migration does not name the snapshot's disk:\n%s", tail(info, 3000))
	}

	out := filepath.Join(t.TempDir(), "out")
	mig := runMigrate(t, env, migrateTimeout, loc, "--snapshot", "pre-migration", "--output", out, "--boot-test")
	if mig.code != 0 {
		t.Fatalf("migrate exited %d after %v\n%s", mig.code, mig.elapsed.Round(time.Second), tail(mig.stderr.String(), 6000))
	}
	j := readReport(t, out)
	if j.Name != vmName {
		t.Errorf("report name %q, want the VM's %q", j.Name, vmName)
	}
	checkBooted(t, out, j.Name, mac, "1536", "2")
	if j.Boot == nil || !j.Boot.Evidence.OK() {
		t.Errorf("boot evidence: %+v", j.Boot)
	}
	if after := fileSums(t, g.Chain...); after != before {
		t.Errorf("the chain changed:\n%s\n%s", before, after)
	}
	t.Logf("vsphere: migrate --snapshot with boot test %v (%s); fetched %s of %s allocated; peak staging %s of %s virtual",
		mig.elapsed.Round(time.Second), stageTimes(j), mib(j.FetchedBytes), mib(j.AllocatedBytes), mib(j.PeakStagingBytes), mib(j.VirtualBytes))
}

func reconfigure(t *testing.T, vm *object.VirtualMachine, spec types.VirtualMachineConfigSpec) {
	t.Helper()
	task, err := vm.Reconfigure(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// runH2KVM runs h2kvm with args and returns its standard output; it fails the test on error.
func runH2KVM(t *testing.T, env []string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, h2kvmBinary(t), args...)
	cmd.Env = env
	var stderr strings.Builder
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("h2kvm %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(b)
}
