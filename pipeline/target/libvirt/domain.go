package libvirt

import (
	"fmt"
	"os"

	"libvirt.org/go/libvirtxml"

	"github.com/h2kvm/h2kvm/pipeline/machine"
)

// DomainOptions are the choices of the KVM side that the source VM does not dictate.
type DomainOptions struct {
	// Type is the libvirt domain type: "kvm" when KVM is usable, else "qemu" (TCG).
	Type string
	// DiskPaths are the converted disks, in the VM's disk order; DiskFormat is "qcow2" or "raw".
	DiskPaths  []string
	DiskFormat string
	// Network is the libvirt network the NICs join ("default" when empty); Bridge, when set,
	// attaches them to a host bridge instead.
	Network string
	Bridge  string
	// UserNetPortForward, when not zero, gives the first NIC QEMU user-mode networking with
	// the host's loopback port forwarded to the guest's port 22: the boot test uses it to reach
	// SSH without a bridge. libvirt 9.0 has no port forwarding for user networking (its passt
	// backend came later), so this NIC is passed to QEMU on its command line. The network is
	// restricted (restrict=on): the guest reaches neither the host — whose loopback QEMU
	// otherwise maps to 10.0.2.2, where h2kvm serve may listen for NBD — nor the outside; only
	// the SSH forward gets through.
	UserNetPortForward int
	// SerialLog, when set, also logs the serial console to this file.
	SerialLog string
	// NVRAMPath is where a UEFI guest's variable store is kept.
	NVRAMPath string
}

// OVMF firmware files of Debian's ovmf package.
const (
	ovmfCode       = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	ovmfCodeSecure = "/usr/share/OVMF/OVMF_CODE_4M.ms.fd"
	ovmfVars       = "/usr/share/OVMF/OVMF_VARS_4M.fd"
	ovmfVarsSecure = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd"
)

// Domain builds the libvirt domain of vm: q35, BIOS or UEFI (OVMF) as vm.Firmware says, virtio
// disks and NICs (MACs preserved), a serial console, the QEMU guest agent channel and a virtio
// RNG. Memory and CPUs default to 2048 MiB and 2 when unknown.
func Domain(vm machine.VM, opt DomainOptions) (*libvirtxml.Domain, error) {
	if len(opt.DiskPaths) == 0 {
		return nil, fmt.Errorf("domain %s: no disks", vm.Name)
	}
	typ := opt.Type
	if typ == "" {
		typ = "qemu"
	}
	mem := vm.MemoryMiB
	if mem <= 0 {
		mem = 2048
	}
	cpus := vm.CPUs
	if cpus <= 0 {
		cpus = 2
	}
	cores := vm.CoresPerSocket
	if cores <= 0 || cpus%cores != 0 {
		cores = 1
	}
	format := opt.DiskFormat
	if format == "" {
		format = "qcow2"
	}

	d := &libvirtxml.Domain{
		Type:   typ,
		Name:   vm.Name,
		Memory: &libvirtxml.DomainMemory{Value: uint(mem), Unit: "MiB"},
		VCPU:   &libvirtxml.DomainVCPU{Value: uint(cpus)},
		CPU: &libvirtxml.DomainCPU{
			Topology: &libvirtxml.DomainCPUTopology{Sockets: cpus / cores, Cores: cores, Threads: 1},
		},
		OS: &libvirtxml.DomainOS{
			Type: &libvirtxml.DomainOSType{Arch: "x86_64", Machine: "q35", Type: "hvm"},
		},
		Features: &libvirtxml.DomainFeatureList{
			ACPI: &libvirtxml.DomainFeature{},
			APIC: &libvirtxml.DomainFeatureAPIC{},
		},
		OnPoweroff: "destroy",
		OnReboot:   "restart",
		OnCrash:    "destroy",
		Devices:    &libvirtxml.DomainDeviceList{},
	}
	if typ == "kvm" {
		d.CPU.Mode = "host-passthrough"
	}
	switch vm.Firmware {
	case "efi":
		code, vars := ovmfCode, ovmfVars
		if vm.SecureBoot {
			code, vars = ovmfCodeSecure, ovmfVarsSecure
			d.Features.SMM = &libvirtxml.DomainFeatureSMM{State: "on"}
		}
		d.OS.Loader = &libvirtxml.DomainLoader{Path: code, Readonly: "yes", Type: "pflash"}
		if vm.SecureBoot {
			d.OS.Loader.Secure = "yes"
		}
		d.OS.NVRam = &libvirtxml.DomainNVRam{NVRam: opt.NVRAMPath, Template: vars}
	case "", "bios":
	default:
		return nil, fmt.Errorf("domain %s: unknown firmware %q", vm.Name, vm.Firmware)
	}

	for i, p := range opt.DiskPaths {
		disk := libvirtxml.DomainDisk{
			Device: "disk",
			Driver: &libvirtxml.DomainDiskDriver{Name: "qemu", Type: format, Discard: "unmap"},
			Source: &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: p}},
			Target: &libvirtxml.DomainDiskTarget{Dev: DiskTarget(i), Bus: "virtio"},
		}
		if i == 0 {
			disk.Boot = &libvirtxml.DomainDeviceBoot{Order: 1}
		}
		d.Devices.Disks = append(d.Devices.Disks, disk)
	}

	nics := vm.NICs
	if len(nics) == 0 {
		nics = []machine.NIC{{}}
	}
	for i, n := range nics {
		iface := libvirtxml.DomainInterface{Model: &libvirtxml.DomainInterfaceModel{Type: "virtio"}}
		if n.MAC != "" {
			iface.MAC = &libvirtxml.DomainInterfaceMAC{Address: n.MAC}
		}
		if i == 0 && opt.UserNetPortForward != 0 {
			mac := n.MAC
			if mac == "" {
				mac = "52:54:00:12:34:56"
			}
			d.QEMUCommandline = &libvirtxml.DomainQEMUCommandline{Args: []libvirtxml.DomainQEMUCommandlineArg{
				{Value: "-netdev"},
				{Value: userNetdev(opt.UserNetPortForward)},
				{Value: "-device"},
				{Value: "virtio-net-pci,netdev=h2kvmnet0,bus=pcie.0,addr=0x10,mac=" + mac},
			}}
			continue
		}
		switch {
		case opt.Bridge != "":
			iface.Source = &libvirtxml.DomainInterfaceSource{Bridge: &libvirtxml.DomainInterfaceSourceBridge{Bridge: opt.Bridge}}
		default:
			net := opt.Network
			if net == "" {
				net = "default"
			}
			iface.Source = &libvirtxml.DomainInterfaceSource{Network: &libvirtxml.DomainInterfaceSourceNetwork{Network: net}}
		}
		d.Devices.Interfaces = append(d.Devices.Interfaces, iface)
	}

	port := uint(0)
	serial := libvirtxml.DomainSerial{
		Source: &libvirtxml.DomainChardevSource{Pty: &libvirtxml.DomainChardevSourcePty{}},
		Target: &libvirtxml.DomainSerialTarget{Port: &port},
	}
	if opt.SerialLog != "" {
		serial.Log = &libvirtxml.DomainChardevLog{File: opt.SerialLog, Append: "off"}
	}
	d.Devices.Serials = []libvirtxml.DomainSerial{serial}
	d.Devices.Consoles = []libvirtxml.DomainConsole{{
		Source: &libvirtxml.DomainChardevSource{Pty: &libvirtxml.DomainChardevSourcePty{}},
		Target: &libvirtxml.DomainConsoleTarget{Type: "serial", Port: &port},
	}}
	d.Devices.Channels = []libvirtxml.DomainChannel{{
		Source: &libvirtxml.DomainChardevSource{UNIX: &libvirtxml.DomainChardevSourceUNIX{Mode: "bind"}},
		Target: &libvirtxml.DomainChannelTarget{VirtIO: &libvirtxml.DomainChannelTargetVirtIO{Name: "org.qemu.guest_agent.0"}},
	}}
	d.Devices.RNGs = []libvirtxml.DomainRNG{{
		Model:   "virtio",
		Backend: &libvirtxml.DomainRNGBackend{Random: &libvirtxml.DomainRNGBackendRandom{Device: "/dev/urandom"}},
	}}
	return d, nil
}

// DiskTarget is the device name of disk i (from 0) in the domain: vda, vdb, …, vdz, vdaa, …
// as the guest kernel names virtio disks.
func DiskTarget(i int) string {
	name := ""
	for i++; i > 0; i = (i - 1) / 26 {
		name = string(rune('a'+(i-1)%26)) + name
	}
	return "vd" + name
}

// WriteDomainXML marshals d to path (written to a temporary name, then renamed).
func WriteDomainXML(d *libvirtxml.Domain, path string) error {
	s, err := d.Marshal()
	if err != nil {
		return fmt.Errorf("domain %s: %w", d.Name, err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(s+"\n"), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// userNetdev is the -netdev of the boot test's user-mode NIC. restrict=on isolates the guest
// from the host and the outside; hostfwd rules are exempt, so SSH from the host's loopback
// still reaches the guest's port 22. Nothing else is forwarded: no guestfwd, smb or tftp.
func userNetdev(sshPort int) string {
	return fmt.Sprintf("user,id=h2kvmnet0,restrict=on,hostfwd=tcp:127.0.0.1:%d-:22", sshPort)
}
