package conf_test

import (
	"fmt"

	"github.com/h2kvm/h2kvm/fixers/linux/conf"
)

// A VMware guest's fstab names its root by the PCI path of the VMware SCSI controller; the
// fstab fixer swaps such names for UUID= and leaves every other byte alone.
func ExampleReplaceField() {
	fstab := "# root\n/dev/disk/by-path/pci-0000:03:00.0-scsi-0:0:0:0-part1\t/\text4\terrors=remount-ro 0 1\n"
	for _, e := range conf.ParseFstab(fstab) {
		unstable, why := conf.Unstable(e.Spec)
		fmt.Println(e.MountPoint, unstable, why)
	}
	out, changed := conf.ReplaceField(fstab, 0, map[string]string{
		"/dev/disk/by-path/pci-0000:03:00.0-scsi-0:0:0:0-part1": "UUID=8b4b1c38-3b2f-4e6c-a75c-551530dc64d4",
	})
	fmt.Print(out)
	fmt.Println(changed)
	// Output:
	// / true names the PCI/SCSI path of the VMware controller
	// # root
	// UUID=8b4b1c38-3b2f-4e6c-a75c-551530dc64d4	/	ext4	errors=remount-ro 0 1
	// true
}

// A systemd .link file that pins a NIC name to a VMware MAC is re-pointed at the virtio driver.
func ExampleRewriteSystemdMatch() {
	link := "[Match]\nMACAddress=00:50:56:a1:b2:01\n\n[Link]\nName=ens192\n"
	keep := func(mac string) bool { return false } // the KVM domain gets a new MAC
	out, _ := conf.RewriteSystemdMatch(link, keep, "virtio_net", "h2kvm")
	fmt.Print(out)
	// Output:
	// [Match]
	// #MACAddress=00:50:56:a1:b2:01  # h2kvm
	// Driver=virtio_net
	//
	// [Link]
	// Name=ens192
}
