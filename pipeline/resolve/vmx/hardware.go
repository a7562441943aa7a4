package vmx

import (
	"fmt"
	"net"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Hardware is what a .vmx says about a VM.
type Hardware struct {
	Name           string
	CPUs           int
	CoresPerSocket int
	MemoryMiB      int
	Firmware       string // "efi" or "bios"
	SecureBoot     bool
	NICs           []NIC
	Disks          []Disk
	// Warnings name entries that were skipped (a CD-ROM, a non-VMDK file, a bad MAC).
	Warnings []string
}

// NIC is an ethernetN adapter.
type NIC struct {
	Index   int
	Model   string // virtualDev lower-cased (vmxnet3, e1000, e1000e, vlance); "" when unset
	MAC     string // lower case, colon separated; "" when none is recorded
	Network string
}

// Disk is a disk device.
type Disk struct {
	Controller string // scsi, sata, nvme, ide
	Bus, Unit  int
	// FileName is the device's fileName as written: usually relative to the .vmx's folder.
	FileName string
}

// UnitString returns "bus:unit".
func (d Disk) UnitString() string { return fmt.Sprintf("%d:%d", d.Bus, d.Unit) }

var (
	diskKey = regexp.MustCompile(`^(scsi|sata|nvme|ide)(\d{1,3}):(\d{1,3})\.filename$`)
	nicKey  = regexp.MustCompile(`^ethernet(\d{1,3})\.present$`)
)

var kindOrder = map[string]int{"scsi": 0, "sata": 1, "nvme": 2, "ide": 3}

// Hardware interprets the file; see the package doc.
func (f *File) Hardware() (*Hardware, error) {
	h := &Hardware{Firmware: "bios"}
	warn := func(format string, args ...any) { h.Warnings = append(h.Warnings, fmt.Sprintf(format, args...)) }
	h.Name, _ = f.Get("displayName")
	var err error
	if h.CPUs, err = f.intKey("numvcpus", 1, 1, 4096); err != nil {
		return nil, err
	}
	if h.CoresPerSocket, err = f.intKey("cpuid.coresPerSocket", 0, 1, 4096); err != nil {
		return nil, err
	}
	if h.MemoryMiB, err = f.intKey("memSize", 0, 1, 1<<30); err != nil {
		return nil, err
	}
	if fw, _ := f.Get("firmware"); strings.EqualFold(strings.TrimSpace(fw), "efi") {
		h.Firmware = "efi"
	}
	h.SecureBoot = f.Bool("uefi.secureBoot.enabled", false)

	nics := make(map[string]bool)
	disks := make(map[string]bool)
	for _, k := range f.keys {
		if nicKey.MatchString(k) {
			nics[k] = true
		} else if diskKey.MatchString(k) {
			disks[k] = true
		}
	}
	for _, k := range sortKeys(nics) {
		idx, _ := strconv.Atoi(nicKey.FindStringSubmatch(k)[1])
		p := fmt.Sprintf("ethernet%d.", idx)
		if !f.Bool(p+"present", false) {
			continue
		}
		n := NIC{Index: idx}
		n.Model, _ = f.Get(p + "virtualDev")
		n.Model = strings.ToLower(strings.TrimSpace(n.Model))
		n.Network, _ = f.Get(p + "networkName")
		typ, _ := f.Get(p + "addressType")
		first, second := p+"generatedAddress", p+"address"
		if strings.EqualFold(typ, "static") {
			first, second = second, first
		}
		mac, ok := f.Get(first)
		if !ok || strings.TrimSpace(mac) == "" {
			mac, _ = f.Get(second)
		}
		if mac = strings.TrimSpace(mac); mac != "" {
			if hw, err := net.ParseMAC(mac); err == nil && len(hw) == 6 {
				n.MAC = hw.String()
			} else {
				warn("%saddress %q is not a MAC; ignored", p, mac)
			}
		}
		h.NICs = append(h.NICs, n)
	}
	sort.Slice(h.NICs, func(i, j int) bool { return h.NICs[i].Index < h.NICs[j].Index })

	for _, k := range sortKeys(disks) {
		g := diskKey.FindStringSubmatch(k)
		kind := g[1]
		bus, _ := strconv.Atoi(g[2])
		unit, _ := strconv.Atoi(g[3])
		dev := fmt.Sprintf("%s%d:%d", kind, bus, unit)
		if !f.Bool(dev+".present", false) || !f.Bool(fmt.Sprintf("%s%d.present", kind, bus), true) {
			continue
		}
		name := strings.TrimSpace(f.entries[k])
		if dt, ok := f.Get(dev + ".deviceType"); ok {
			l := strings.ToLower(dt)
			if strings.Contains(l, "cdrom") || !strings.Contains(l, "disk") || strings.Contains(l, "raw") {
				if !strings.Contains(l, "cdrom") {
					warn("%s: deviceType %q is not a virtual disk; skipped", dev, dt)
				}
				continue
			}
		}
		if !strings.HasSuffix(strings.ToLower(name), ".vmdk") {
			warn("%s: fileName %q is not a .vmdk; skipped", dev, name)
			continue
		}
		h.Disks = append(h.Disks, Disk{Controller: kind, Bus: bus, Unit: unit, FileName: name})
	}
	sort.Slice(h.Disks, func(i, j int) bool {
		a, b := h.Disks[i], h.Disks[j]
		if a.Controller != b.Controller {
			return kindOrder[a.Controller] < kindOrder[b.Controller]
		}
		if a.Bus != b.Bus {
			return a.Bus < b.Bus
		}
		return a.Unit < b.Unit
	})
	// bios.hddOrder ("scsi0:1,scsi0:0") names the boot disk first.
	if order, ok := f.Get("bios.hddOrder"); ok {
		first := strings.ToLower(strings.TrimSpace(strings.Split(order, ",")[0]))
		for i, d := range h.Disks {
			if fmt.Sprintf("%s%d:%d", d.Controller, d.Bus, d.Unit) == first && i > 0 {
				boot := h.Disks[i]
				copy(h.Disks[1:i+1], h.Disks[:i])
				h.Disks[0] = boot
				break
			}
		}
	}
	return h, nil
}

// intKey reads an integer entry in [lo, hi]; absent is def.
func (f *File) intKey(key string, def, lo, hi int) (int, error) {
	v, ok := f.Get(key)
	if !ok || strings.TrimSpace(v) == "" {
		return def, nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("vmx: %s: %s = %q is not a number in [%d, %d]: %w", f.Name, key, v, lo, hi, ErrInvalid)
	}
	return n, nil
}
