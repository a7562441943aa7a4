package vsphere

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/h2kvm/h2kvm/pipeline/machine"
)

// DiskInfo is one virtual disk.
type DiskInfo struct {
	Controller string `json:"controller"` // scsi, sata, nvme, ide
	Unit       string `json:"unit"`       // bus:unit
	Capacity   int64  `json:"capacity"`
	// Chain is the backing chain as datastore paths ("[DS] dir/x-000001.vmdk"), top first.
	Chain []string `json:"chain"`
	// URL is the /folder URL of the top link.
	URL string `json:"url"`
}

// SnapshotInfo is one snapshot of a VM.
type SnapshotInfo struct {
	Name       string    `json:"name"`
	Path       string    `json:"path"` // names from the root, "/"-separated
	MoRef      string    `json:"moref"`
	Created    time.Time `json:"created"`
	PowerState string    `json:"power_state"`
	Current    bool      `json:"current"`
}

// VMInfo is what List returns for each VM.
type VMInfo struct {
	Name       string         `json:"name"`
	Path       string         `json:"path,omitempty"` // inventory path
	MoRef      string         `json:"moref"`
	PowerState string         `json:"power_state"`
	CPUs       int            `json:"cpus"`
	MemoryMiB  int            `json:"memory_mib"`
	GuestID    string         `json:"guest_id,omitempty"`
	Firmware   string         `json:"firmware,omitempty"`
	CBT        bool           `json:"cbt"` // changed block tracking enabled
	Template   bool           `json:"template,omitempty"`
	Disks      []DiskInfo     `json:"disks"`
	Snapshots  []SnapshotInfo `json:"snapshots,omitempty"`
	// Problem says why the VM cannot be migrated as it is (a physical RDM disk), or is "".
	Problem string `json:"problem,omitempty"`
}

// retrieve reads the properties of one VM.
func (c *Client) retrieve(ctx context.Context, ref types.ManagedObjectReference) (*mo.VirtualMachine, error) {
	var vm mo.VirtualMachine
	if err := property.DefaultCollector(c.VC).RetrieveOne(ctx, ref, vmProps, &vm); err != nil {
		return nil, fmt.Errorf("vsphere: %s: VM %s: %w", c.Host, ref.Value, err)
	}
	if vm.Config == nil {
		return nil, fmt.Errorf("vsphere: %s: VM %s has no configuration (inaccessible or orphaned): %w", c.Host, vm.Name, ErrUnsupported)
	}
	return &vm, nil
}

// networkNames maps network MoRefs and distributed portgroup keys to names.
func (c *Client) networkNames(ctx context.Context, refs []types.ManagedObjectReference) map[string]string {
	out := make(map[string]string)
	if len(refs) == 0 {
		return out
	}
	var nets []mo.Network
	_ = property.DefaultCollector(c.VC).Retrieve(ctx, refs, []string{"name"}, &nets)
	for _, n := range nets {
		out[n.Self.Value] = n.Name
	}
	var pgs []mo.DistributedVirtualPortgroup
	var dv []types.ManagedObjectReference
	for _, r := range refs {
		if r.Type == "DistributedVirtualPortgroup" {
			dv = append(dv, r)
		}
	}
	if len(dv) > 0 {
		_ = property.DefaultCollector(c.VC).Retrieve(ctx, dv, []string{"name", "key"}, &pgs)
		for _, p := range pgs {
			out["key:"+p.Key] = p.Name
		}
	}
	return out
}

// nics describes the ethernet cards of devs.
func nics(devs object.VirtualDeviceList, names map[string]string) []machine.NIC {
	var out []machine.NIC
	for _, d := range devs {
		card, ok := d.(types.BaseVirtualEthernetCard)
		if !ok {
			continue
		}
		ec := card.GetVirtualEthernetCard()
		n := machine.NIC{
			Model: strings.ToLower(strings.TrimPrefix(devs.TypeName(d), "Virtual")),
			MAC:   strings.ToLower(ec.MacAddress),
		}
		switch b := ec.Backing.(type) {
		case *types.VirtualEthernetCardNetworkBackingInfo:
			n.Network = b.DeviceName
			if n.Network == "" && b.Network != nil {
				n.Network = names[b.Network.Value]
			}
		case *types.VirtualEthernetCardDistributedVirtualPortBackingInfo:
			n.Network = names["key:"+b.Port.PortgroupKey]
			if n.Network == "" {
				n.Network = b.Port.PortgroupKey
			}
		case *types.VirtualEthernetCardOpaqueNetworkBackingInfo:
			n.Network = b.OpaqueNetworkId
		}
		out = append(out, n)
	}
	return out
}

// controllerKind names the bus of a disk controller.
func controllerKind(d types.BaseVirtualDevice) string {
	switch d.(type) {
	case types.BaseVirtualSCSIController:
		return "scsi"
	case types.BaseVirtualSATAController:
		return "sata"
	case *types.VirtualNVMEController:
		return "nvme"
	case *types.VirtualIDEController:
		return "ide"
	}
	return ""
}

// disks describes the virtual disks of devs: controller, unit, capacity and backing chain.
func disks(devs object.VirtualDeviceList) ([]DiskInfo, error) {
	var out []DiskInfo
	for _, d := range devs.SelectByType((*types.VirtualDisk)(nil)) {
		disk := d.(*types.VirtualDisk)
		var di DiskInfo
		ctrl := devs.FindByKey(disk.ControllerKey)
		if ctrl != nil {
			di.Controller = controllerKind(ctrl)
			unit := int32(0)
			if disk.UnitNumber != nil {
				unit = *disk.UnitNumber
			}
			bus := int32(0)
			if bc, ok := ctrl.(types.BaseVirtualController); ok {
				bus = bc.GetVirtualController().BusNumber
			}
			di.Unit = fmt.Sprintf("%d:%d", bus, unit)
		}
		di.Capacity = disk.CapacityInBytes
		if di.Capacity == 0 {
			di.Capacity = disk.CapacityInKB * 1024
		}
		chain, err := backingChain(disk.Backing)
		if err != nil {
			return nil, fmt.Errorf("disk %s %s: %w", di.Controller, di.Unit, err)
		}
		di.Chain = chain
		out = append(out, di)
	}
	return out, nil
}

// backingChain lists the files of a disk backing from the top link down.
func backingChain(b types.BaseVirtualDeviceBackingInfo) ([]string, error) {
	var chain []string
	for range 256 {
		switch x := b.(type) {
		case *types.VirtualDiskFlatVer2BackingInfo:
			chain = append(chain, x.FileName)
			if x.Parent == nil {
				return chain, nil
			}
			b = x.Parent
		case *types.VirtualDiskSeSparseBackingInfo:
			chain = append(chain, x.FileName)
			if x.Parent == nil {
				return chain, nil
			}
			b = x.Parent
		case *types.VirtualDiskSparseVer2BackingInfo:
			chain = append(chain, x.FileName)
			if x.Parent == nil {
				return chain, nil
			}
			b = x.Parent
		case *types.VirtualDiskFlatVer1BackingInfo:
			chain = append(chain, x.FileName)
			if x.Parent == nil {
				return chain, nil
			}
			b = x.Parent
		case *types.VirtualDiskSparseVer1BackingInfo:
			chain = append(chain, x.FileName)
			if x.Parent == nil {
				return chain, nil
			}
			b = x.Parent
		case *types.VirtualDiskRawDiskMappingVer1BackingInfo:
			if x.CompatibilityMode == string(types.VirtualDiskCompatibilityModePhysicalMode) {
				return nil, fmt.Errorf("%s is a physical-mode raw device mapping (LUN %s), which cannot be read through the datastore: %w", x.FileName, x.LunUuid, ErrUnsupported)
			}
			chain = append(chain, x.FileName)
			if x.Parent == nil {
				return chain, nil
			}
			b = x.Parent
		case nil:
			if len(chain) == 0 {
				return nil, fmt.Errorf("disk has no backing: %w", ErrUnsupported)
			}
			return chain, nil
		default:
			return nil, fmt.Errorf("disk backing %T is not file-based: %w", b, ErrUnsupported)
		}
	}
	return nil, fmt.Errorf("disk backing chain longer than 256 links: %w", ErrUnsupported)
}

// FolderURL maps a datastore path "[DS] dir/file.vmdk" to the /folder URL of host, with user
// (no password) when not empty.
func FolderURL(host, user, dcPath, dsPath string) (string, error) {
	var p object.DatastorePath
	if !p.FromString(dsPath) || p.Datastore == "" || p.Path == "" {
		return "", fmt.Errorf("%q is not a datastore path ([DS] dir/file): %w", dsPath, ErrUnsupported)
	}
	u := url.URL{Scheme: "https", Host: host, Path: "/folder/" + strings.TrimPrefix(p.Path, "/")}
	if user != "" {
		u.User = url.User(user)
	}
	q := url.Values{}
	q.Set("dcPath", dcPath)
	q.Set("dsName", p.Datastore)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// snapshots flattens a snapshot tree.
func snapshots(info *types.VirtualMachineSnapshotInfo) []SnapshotInfo {
	if info == nil {
		return nil
	}
	var out []SnapshotInfo
	var walk func(list []types.VirtualMachineSnapshotTree, prefix string)
	walk = func(list []types.VirtualMachineSnapshotTree, prefix string) {
		for _, s := range list {
			p := s.Name
			if prefix != "" {
				p = prefix + "/" + s.Name
			}
			out = append(out, SnapshotInfo{
				Name: s.Name, Path: p, MoRef: s.Snapshot.Value, Created: s.CreateTime,
				PowerState: string(s.State),
				Current:    info.CurrentSnapshot != nil && info.CurrentSnapshot.Value == s.Snapshot.Value,
			})
			walk(s.ChildSnapshotList, p)
		}
	}
	walk(info.RootSnapshotList, "")
	return out
}

// findSnapshot chooses a snapshot by MoRef, path or name.
func findSnapshot(vmName string, info *types.VirtualMachineSnapshotInfo, want string) (*SnapshotInfo, error) {
	all := snapshots(info)
	var hits []SnapshotInfo
	for _, s := range all {
		if s.MoRef == want || s.Path == want {
			return &s, nil
		}
		if s.Name == want {
			hits = append(hits, s)
		}
	}
	switch len(hits) {
	case 1:
		return &hits[0], nil
	case 0:
		var names []string
		for _, s := range all {
			names = append(names, s.Path)
		}
		if len(names) == 0 {
			names = []string{"none"}
		}
		return nil, fmt.Errorf("VM %s has no snapshot %q (it has: %s): %w", vmName, want, strings.Join(names, ", "), ErrNotFound)
	}
	return nil, fmt.Errorf("VM %s has %d snapshots called %q; name one by path (parent/child) or MoRef: %w", vmName, len(hits), want, ErrAmbiguous)
}
