package vsphere

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// vmProps are the VM properties Resolve and List read.
var vmProps = []string{"name", "config", "runtime.powerState", "snapshot", "network", "parent"}

// found is a VM with its datacenter.
type found struct {
	ref    types.ManagedObjectReference
	dcPath string // inventory path without the leading slash
	path   string // inventory path of the VM, when known
}

// datacenters returns the datacenter of l, or all when l names none.
func (c *Client) datacenters(ctx context.Context, l *Location) ([]*object.Datacenter, error) {
	f := find.NewFinder(c.VC, false)
	if l.DC != "" {
		dc, err := f.Datacenter(ctx, "/"+l.DC)
		if err != nil {
			return nil, c.notFound(err, "datacenter %q", l.DC)
		}
		return []*object.Datacenter{dc}, nil
	}
	dcs, err := f.DatacenterList(ctx, "*")
	if err != nil {
		return nil, c.notFound(err, "datacenters")
	}
	return dcs, nil
}

func (c *Client) notFound(err error, format string, args ...any) error {
	var nf *find.NotFoundError
	if errors.As(err, &nf) {
		return fmt.Errorf("vsphere: %s: %s: %w", c.Host, fmt.Sprintf(format, args...), ErrNotFound)
	}
	return fmt.Errorf("vsphere: %s: %s: %w", c.Host, fmt.Sprintf(format, args...), err)
}

// dcOf returns the datacenter holding ref.
func (c *Client) dcOf(ctx context.Context, ref types.ManagedObjectReference) (string, error) {
	pc := property.DefaultCollector(c.VC)
	cur := ref
	var names []string
	seenDC := false
	for range 64 {
		var me mo.ManagedEntity
		if err := pc.RetrieveOne(ctx, cur, []string{"name", "parent"}, &me); err != nil {
			return "", fmt.Errorf("vsphere: %s: %s: %w", c.Host, cur, err)
		}
		if cur.Type == "Datacenter" {
			seenDC = true
		}
		if seenDC {
			names = append(names, me.Name)
		}
		if me.Parent == nil {
			break
		}
		cur = *me.Parent
	}
	if !seenDC || len(names) < 2 {
		return "", fmt.Errorf("vsphere: %s: %s is in no datacenter: %w", c.Host, ref, ErrNotFound)
	}
	// names: DC, folders…, root folder; the root folder is not part of inventory paths.
	names = names[:len(names)-1]
	for i, j := 0, len(names)-1; i < j; i, j = i+1, j-1 {
		names[i], names[j] = names[j], names[i]
	}
	return strings.Join(names, "/"), nil
}

// findVM finds the VM of l: by MoRef, by inventory path, or by name.
func (c *Client) findVM(ctx context.Context, l *Location) (*found, error) {
	if l.MoRef != "" {
		ref := types.ManagedObjectReference{Type: "VirtualMachine", Value: l.MoRef}
		var me mo.ManagedEntity
		if err := property.DefaultCollector(c.VC).RetrieveOne(ctx, ref, []string{"name"}, &me); err != nil {
			return nil, fmt.Errorf("vsphere: %s: VM %s: %v: %w", c.Host, l.MoRef, err, ErrNotFound)
		}
		dc, err := c.dcOf(ctx, ref)
		if err != nil {
			return nil, err
		}
		return &found{ref: ref, dcPath: dc}, nil
	}
	if l.Path == "" {
		return nil, fmt.Errorf("vsphere: %s names no VM: %w", l, ErrBadURL)
	}
	dcs, err := c.datacenters(ctx, l)
	if err != nil {
		return nil, err
	}
	if l.HasVM {
		f := find.NewFinder(c.VC, false).SetDatacenter(dcs[0])
		vm, err := f.VirtualMachine(ctx, path.Join(dcs[0].InventoryPath, "vm", l.Path))
		if err == nil {
			return &found{ref: vm.Reference(), dcPath: strings.TrimPrefix(dcs[0].InventoryPath, "/"), path: vm.InventoryPath}, nil
		}
		var nf *find.NotFoundError
		if !errors.As(err, &nf) {
			return nil, fmt.Errorf("vsphere: %s: %s: %w", c.Host, l, err)
		}
	}
	// Search by name below each datacenter's vm folder.
	name := path.Base(l.Path)
	var hits []*found
	for _, dc := range dcs {
		folders, err := dc.Folders(ctx)
		if err != nil {
			return nil, fmt.Errorf("vsphere: %s: %w", c.Host, err)
		}
		m := view.NewManager(c.VC)
		v, err := m.CreateContainerView(ctx, folders.VmFolder.Reference(), []string{"VirtualMachine"}, true)
		if err != nil {
			return nil, fmt.Errorf("vsphere: %s: %w", c.Host, err)
		}
		refs, err := v.Find(ctx, []string{"VirtualMachine"}, property.Match{"name": name})
		v.Destroy(context.WithoutCancel(ctx))
		if err != nil {
			return nil, fmt.Errorf("vsphere: %s: %w", c.Host, err)
		}
		for _, r := range refs {
			hits = append(hits, &found{ref: r, dcPath: strings.TrimPrefix(dc.InventoryPath, "/")})
		}
	}
	switch len(hits) {
	case 0:
		return nil, fmt.Errorf("vsphere: %s: no VM %q: %w", c.Host, l.Path, ErrNotFound)
	case 1:
		return hits[0], nil
	}
	var ids []string
	for _, h := range hits {
		ids = append(ids, h.dcPath+":"+h.ref.Value)
	}
	return nil, fmt.Errorf("vsphere: %s: %d VMs are called %q (%s); name one by path or ?moref=: %w", c.Host, len(hits), name, strings.Join(ids, ", "), ErrAmbiguous)
}
