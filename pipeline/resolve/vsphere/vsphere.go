package vsphere

import (
	"context"
	"fmt"
	"path"
	"strings"

	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/h2kvm/h2kvm/pipeline/machine"
)

// Resolve logs in, finds the VM of location and describes it (see the package doc).
func Resolve(ctx context.Context, location string, opt Options) (*machine.VM, error) {
	l, err := ParseLocation(location)
	if err != nil {
		return nil, err
	}
	c, err := Login(ctx, l, opt)
	if err != nil {
		return nil, err
	}
	vm, err := c.Resolve(ctx, l, opt)
	switch {
	case err != nil || opt.Sessions == nil:
		c.Logout(context.WithoutCancel(ctx), opt)
	case opt.SessionFile != "":
		opt.Sessions.Lend(c.Session()) // saved for the next run: not logged out
	default:
		opt.Sessions.Put(c.Session())
	}
	return vm, err
}

// Resolve describes the VM of l through an existing session.
func (c *Client) Resolve(ctx context.Context, l *Location, opt Options) (*machine.VM, error) {
	f, err := c.findVM(ctx, l)
	if err != nil {
		return nil, err
	}
	vm, err := c.retrieve(ctx, f.ref)
	if err != nil {
		return nil, err
	}
	cfg := vm.Config
	snap := opt.Snapshot
	if snap == "" {
		snap = l.Snapshot
	}
	devs := object.VirtualDeviceList(cfg.Hardware.Device)
	if snap != "" {
		s, err := findSnapshot(vm.Name, vm.Snapshot, snap)
		if err != nil {
			return nil, fmt.Errorf("vsphere: %s: %w", c.Host, err)
		}
		var sm mo.VirtualMachineSnapshot
		ref := types.ManagedObjectReference{Type: "VirtualMachineSnapshot", Value: s.MoRef}
		if err := property.DefaultCollector(c.VC).RetrieveOne(ctx, ref, []string{"config"}, &sm); err != nil {
			return nil, fmt.Errorf("vsphere: %s: snapshot %s of %s: %w", c.Host, s.Path, vm.Name, err)
		}
		// The snapshot's own layout: hardware and disks as they were when it was taken.
		cfg = &sm.Config
		devs = object.VirtualDeviceList(cfg.Hardware.Device)
	} else if vm.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn {
		opt.warnf("vsphere: VM %s is running and no snapshot was chosen: its disks change while they are read, so the copy may be inconsistent (take a snapshot and name it)", vm.Name)
	}
	out := &machine.VM{
		Name:           vm.Name,
		CPUs:           int(cfg.Hardware.NumCPU),
		CoresPerSocket: coresPerSocket(cfg),
		MemoryMiB:      int(cfg.Hardware.MemoryMB),
		Firmware:       firmware(cfg),
		SecureBoot:     cfg.BootOptions != nil && cfg.BootOptions.EfiSecureBootEnabled != nil && *cfg.BootOptions.EfiSecureBootEnabled,
		NICs:           nics(devs, c.networkNames(ctx, vm.Network)),
		Disks:          []machine.Disk{},
	}
	ds, err := disks(devs)
	if err != nil {
		return nil, fmt.Errorf("vsphere: %s: VM %s: %w", c.Host, vm.Name, err)
	}
	for _, d := range ds {
		u, err := FolderURL(c.Host, l.User, f.dcPath, d.Chain[0])
		if err != nil {
			return nil, fmt.Errorf("vsphere: %s: VM %s: disk %s %s: %w", c.Host, vm.Name, d.Controller, d.Unit, err)
		}
		out.Disks = append(out.Disks, machine.Disk{Source: u, Controller: d.Controller, Unit: d.Unit, Capacity: d.Capacity})
	}
	if len(out.Disks) == 0 {
		return nil, fmt.Errorf("vsphere: %s: VM %s has no virtual disk: %w", c.Host, vm.Name, ErrUnsupported)
	}
	return out, nil
}

func coresPerSocket(cfg *types.VirtualMachineConfigInfo) int {
	if cfg.Hardware.NumCoresPerSocket == nil {
		return 0
	}
	return int(*cfg.Hardware.NumCoresPerSocket)
}

func firmware(cfg *types.VirtualMachineConfigInfo) string {
	switch cfg.Firmware {
	case string(types.GuestOsDescriptorFirmwareTypeEfi):
		return "efi"
	case string(types.GuestOsDescriptorFirmwareTypeBios):
		return "bios"
	}
	return ""
}

// List logs in and describes every VM under the folder location names (see the package doc).
func List(ctx context.Context, location string, opt Options) ([]VMInfo, error) {
	l, err := ParseLocation(location)
	if err != nil {
		return nil, err
	}
	c, err := Login(ctx, l, opt)
	if err != nil {
		return nil, err
	}
	defer c.Logout(context.WithoutCancel(ctx), opt)
	return c.List(ctx, l)
}

// List describes every VM under the folder of l (recursively), in inventory path order.
func (c *Client) List(ctx context.Context, l *Location) ([]VMInfo, error) {
	dcs, err := c.datacenters(ctx, l)
	if err != nil {
		return nil, err
	}
	var out []VMInfo
	for _, dc := range dcs {
		root := path.Join(dc.InventoryPath, "vm", l.Path)
		if !l.HasVM && l.Path != "" {
			root = path.Join(dc.InventoryPath, "vm")
		}
		f := find.NewFinder(c.VC, false).SetDatacenter(dc)
		vms, err := f.VirtualMachineList(ctx, root+"/...")
		if err != nil {
			if _, nf := err.(*find.NotFoundError); nf {
				// A VM path rather than a folder, or an empty folder.
				if vm, err2 := f.VirtualMachine(ctx, root); err2 == nil {
					vms = []*object.VirtualMachine{vm}
				} else {
					continue
				}
			} else {
				return nil, fmt.Errorf("vsphere: %s: %s: %w", c.Host, root, err)
			}
		}
		dcPath := strings.TrimPrefix(dc.InventoryPath, "/")
		for _, v := range vms {
			info, err := c.describe(ctx, v, dcPath, l.User)
			if err != nil {
				return nil, err
			}
			if !l.HasVM && l.Path != "" && info.Name != path.Base(l.Path) {
				continue
			}
			out = append(out, *info)
		}
	}
	return out, nil
}

func (c *Client) describe(ctx context.Context, v *object.VirtualMachine, dcPath, user string) (*VMInfo, error) {
	var vm mo.VirtualMachine
	if err := property.DefaultCollector(c.VC).RetrieveOne(ctx, v.Reference(), vmProps, &vm); err != nil {
		return nil, fmt.Errorf("vsphere: %s: %s: %w", c.Host, v.InventoryPath, err)
	}
	info := &VMInfo{Name: vm.Name, Path: v.InventoryPath, MoRef: vm.Self.Value, PowerState: string(vm.Runtime.PowerState), Disks: []DiskInfo{}}
	info.Snapshots = snapshots(vm.Snapshot)
	if vm.Config == nil {
		return info, nil
	}
	cfg := vm.Config
	info.CPUs, info.MemoryMiB = int(cfg.Hardware.NumCPU), int(cfg.Hardware.MemoryMB)
	info.GuestID, info.Firmware, info.Template = cfg.GuestId, firmware(cfg), cfg.Template
	info.CBT = cfg.ChangeTrackingEnabled != nil && *cfg.ChangeTrackingEnabled
	ds, err := disks(object.VirtualDeviceList(cfg.Hardware.Device))
	if err != nil {
		// Listed all the same: one unreadable VM must not hide the others.
		info.Problem = err.Error()
	}
	for i := range ds {
		ds[i].URL, _ = FolderURL(c.Host, user, dcPath, ds[i].Chain[0])
	}
	info.Disks = ds
	return info, nil
}
