package libvirt

import (
	"testing"

	"github.com/h2kvm/h2kvm/pipeline/machine"
)

func TestDiskTarget(t *testing.T) {
	for i, want := range map[int]string{0: "vda", 1: "vdb", 25: "vdz", 26: "vdaa", 27: "vdab", 51: "vdaz", 52: "vdba", 701: "vdzz", 702: "vdaaa"} {
		if got := DiskTarget(i); got != want {
			t.Errorf("DiskTarget(%d) = %s, want %s", i, got, want)
		}
	}
}

// TestDomainDiskOrder: the disks of a VM are virtio disks in the VM's order; the first boots.
func TestDomainDiskOrder(t *testing.T) {
	d, err := Domain(machine.VM{Name: "two"}, DomainOptions{DiskPaths: []string{"/o/two-disk0.qcow2", "/o/two-disk1.qcow2", "/o/two-disk2.qcow2"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Devices.Disks) != 3 {
		t.Fatalf("%d disks", len(d.Devices.Disks))
	}
	for i, disk := range d.Devices.Disks {
		if disk.Source.File.File != []string{"/o/two-disk0.qcow2", "/o/two-disk1.qcow2", "/o/two-disk2.qcow2"}[i] ||
			disk.Target.Dev != DiskTarget(i) || disk.Target.Bus != "virtio" || (disk.Boot != nil) != (i == 0) {
			t.Errorf("disk %d: %+v %+v %+v", i, disk.Source.File, disk.Target, disk.Boot)
		}
	}
}
