package vsphere

import (
	"context"
	"fmt"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/types"
)

// TempSnapshot is a snapshot h2kvm took so that a running VM's disks can be read consistently.
type TempSnapshot struct {
	// Name is the snapshot's name (h2kvm-YYYYMMDDThhmmssZ); pass it as Options.Snapshot.
	Name  string
	MoRef string
	c     *Client
	vm    *object.VirtualMachine
}

// CreateTempSnapshot takes a crash-consistent snapshot (no memory; quiesced when quiesce is
// set, which needs VMware Tools) of the VM of l. Remove it once the disks have been read.
func (c *Client) CreateTempSnapshot(ctx context.Context, l *Location, quiesce bool) (*TempSnapshot, error) {
	f, err := c.findVM(ctx, l)
	if err != nil {
		return nil, err
	}
	vm := object.NewVirtualMachine(c.VC, f.ref)
	name := "h2kvm-" + time.Now().UTC().Format("20060102T150405Z")
	task, err := vm.CreateSnapshot(ctx, name, "taken by h2kvm to read the disks; removed afterwards", false, quiesce)
	if err != nil {
		return nil, fmt.Errorf("vsphere: %s: snapshot of %s: %w", c.Host, f.ref.Value, err)
	}
	res, err := task.WaitForResult(ctx)
	if err != nil {
		return nil, fmt.Errorf("vsphere: %s: snapshot of %s: %w", c.Host, f.ref.Value, err)
	}
	ref, ok := res.Result.(types.ManagedObjectReference)
	if !ok {
		return nil, fmt.Errorf("vsphere: %s: snapshot of %s returned %T", c.Host, f.ref.Value, res.Result)
	}
	return &TempSnapshot{Name: name, MoRef: ref.Value, c: c, vm: vm}, nil
}

// Remove deletes the snapshot, consolidating its delta into the VM's disks.
func (s *TempSnapshot) Remove(ctx context.Context) error {
	consolidate := true
	ref := types.ManagedObjectReference{Type: "VirtualMachineSnapshot", Value: s.MoRef}
	res, err := methods.RemoveSnapshot_Task(ctx, s.c.VC, &types.RemoveSnapshot_Task{This: ref, Consolidate: &consolidate})
	if err == nil {
		err = object.NewTask(s.c.VC, res.Returnval).Wait(ctx)
	}
	if err != nil {
		return fmt.Errorf("vsphere: %s: removing snapshot %s (%s): %w", s.c.Host, s.Name, s.MoRef, err)
	}
	return nil
}
