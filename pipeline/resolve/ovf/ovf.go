package ovf

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"net"
	"path"
	"strconv"
	"strings"
)

// MaxSize bounds the size of a descriptor Parse accepts.
const MaxSize = 16 << 20

// Envelope is what h2kvm takes from an OVF descriptor.
type Envelope struct {
	Files []File
	Disks []Disk
	// System is the first virtual system (a VirtualSystemCollection's first member).
	System System
	// Warnings name things that were ignored (extra virtual systems, unattached disks, a MAC
	// that is not one).
	Warnings []string
}

// File is a References/File entry.
type File struct {
	ID   string
	Href string // relative to the descriptor, cleaned; never absolute nor leaving the package
	// Size is the declared size in bytes (0 when absent); Compression is "" or "gzip".
	Size        int64
	Compression string
	ChunkSize   int64
}

// Disk is a DiskSection/Disk entry.
type Disk struct {
	ID       string
	FileRef  string // "" for a disk created empty on import
	Capacity int64  // bytes
	Format   string // e.g. ...vmdk.html#streamOptimized
}

// System is a virtual system's hardware.
type System struct {
	ID             string
	Name           string
	OSType         string // vmw:osType, when given
	CPUs           int
	CoresPerSocket int
	MemoryMiB      int64
	Firmware       string // "bios", "efi" or ""
	SecureBoot     bool
	NICs           []NIC
	Disks          []Attachment // in the order of the hardware section
}

// NIC is an ethernet adapter item.
type NIC struct {
	Model   string // lower case: vmxnet3, e1000, e1000e, …
	MAC     string // lower case, colon separated, "" when the descriptor has none
	Network string
}

// Attachment is a disk item: which Disk (or File), on which controller.
type Attachment struct {
	DiskID     string // "" when HostResource names a file directly
	File       *File  // the file holding the disk's bytes; nil for a disk without a file
	Capacity   int64
	Controller string // ide, scsi, sata, nvme, "" when unknown
	Bus, Unit  int
}

// ---- XML shapes; fields are matched by local name so namespace prefixes do not matter ----

type xEnvelope struct {
	Files      []xFile  `xml:"References>File"`
	Disks      []xDisk  `xml:"DiskSection>Disk"`
	Systems    []xSys   `xml:"VirtualSystem"`
	Collection []xSysCl `xml:"VirtualSystemCollection"`
}

type xSysCl struct {
	Systems []xSys `xml:"VirtualSystem"`
}

type xFile struct {
	ID          string `xml:"id,attr"`
	Href        string `xml:"href,attr"`
	Size        string `xml:"size,attr"`
	Compression string `xml:"compression,attr"`
	ChunkSize   string `xml:"chunkSize,attr"`
}

type xDisk struct {
	ID       string `xml:"diskId,attr"`
	FileRef  string `xml:"fileRef,attr"`
	Capacity string `xml:"capacity,attr"`
	Units    string `xml:"capacityAllocationUnits,attr"`
	Format   string `xml:"format,attr"`
}

type xSys struct {
	ID       string      `xml:"id,attr"`
	Name     string      `xml:"Name"`
	OS       []xOS       `xml:"OperatingSystemSection"`
	Hardware []xHardware `xml:"VirtualHardwareSection"`
}

type xOS struct {
	OSType string `xml:"osType,attr"`
}

type xHardware struct {
	Items       []xItem   `xml:"Item"`
	Storage     []xItem   `xml:"StorageItem"`
	Ethernet    []xItem   `xml:"EthernetPortItem"`
	Config      []xConfig `xml:"Config"`
	ExtraConfig []xConfig `xml:"ExtraConfig"`
}

type xItem struct {
	ResourceType    string   `xml:"ResourceType"`
	ResourceSubType string   `xml:"ResourceSubType"`
	InstanceID      string   `xml:"InstanceID"`
	Parent          string   `xml:"Parent"`
	Address         string   `xml:"Address"`
	AddressOnParent string   `xml:"AddressOnParent"`
	HostResource    []string `xml:"HostResource"`
	Connection      []string `xml:"Connection"`
	VirtualQuantity string   `xml:"VirtualQuantity"`
	AllocationUnits string   `xml:"AllocationUnits"`
	CoresPerSocket  string   `xml:"CoresPerSocket"`
	ElementName     string   `xml:"ElementName"`
}

type xConfig struct {
	Key   string `xml:"key,attr"`
	Value string `xml:"value,attr"`
}

// Parse reads a descriptor of at most MaxSize bytes. name is used in errors.
func Parse(r io.Reader, name string) (*Envelope, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("ovf: %s: %w", name, err)
	}
	if len(data) > MaxSize {
		return nil, fmt.Errorf("ovf: %s: descriptor larger than %d bytes: %w", name, MaxSize, ErrInvalid)
	}
	var x xEnvelope
	dec := xml.NewDecoder(bytes.NewReader(data))
	dec.CharsetReader = charsetReader
	if err := dec.Decode(&x); err != nil {
		return nil, fmt.Errorf("ovf: %s: not an OVF descriptor: %v: %w", name, err, ErrInvalid)
	}
	p := parser{name: name, env: &Envelope{}}
	if err := p.build(&x); err != nil {
		return nil, err
	}
	return p.env, nil
}

// charsetReader accepts only UTF-8 and ASCII declarations (ovftool writes UTF-8).
func charsetReader(label string, in io.Reader) (io.Reader, error) {
	switch strings.ToLower(label) {
	case "utf-8", "utf8", "us-ascii", "ascii":
		return in, nil
	}
	return nil, fmt.Errorf("encoding %q not supported", label)
}

type parser struct {
	name string
	env  *Envelope
}

func (p *parser) errorf(format string, args ...any) error {
	return fmt.Errorf("ovf: %s: %s: %w", p.name, fmt.Sprintf(format, args...), ErrInvalid)
}

func (p *parser) warnf(format string, args ...any) {
	p.env.Warnings = append(p.env.Warnings, fmt.Sprintf(format, args...))
}

func (p *parser) build(x *xEnvelope) error {
	files := make(map[string]int)
	for _, f := range x.Files {
		href, err := cleanHref(f.Href)
		if err != nil {
			return p.errorf("References/File %q: %v", f.ID, err)
		}
		if f.ID == "" {
			return p.errorf("References/File %q has no ovf:id", f.Href)
		}
		if _, dup := files[f.ID]; dup {
			return p.errorf("References/File id %q used twice", f.ID)
		}
		size, err := parseCount(f.Size, "size")
		if err != nil {
			return p.errorf("References/File %q: %v", f.ID, err)
		}
		chunk, err := parseCount(f.ChunkSize, "chunkSize")
		if err != nil {
			return p.errorf("References/File %q: %v", f.ID, err)
		}
		comp := strings.TrimSpace(f.Compression)
		if comp != "" && comp != "identity" && comp != "gzip" {
			return p.errorf("References/File %q: compression %q unknown", f.ID, comp)
		}
		if comp == "identity" {
			comp = ""
		}
		files[f.ID] = len(p.env.Files)
		p.env.Files = append(p.env.Files, File{ID: f.ID, Href: href, Size: size, Compression: comp, ChunkSize: chunk})
	}
	disks := make(map[string]int)
	for _, d := range x.Disks {
		if d.ID == "" {
			return p.errorf("DiskSection/Disk without ovf:diskId")
		}
		if _, dup := disks[d.ID]; dup {
			return p.errorf("DiskSection/Disk id %q used twice", d.ID)
		}
		if d.FileRef != "" {
			if _, ok := files[d.FileRef]; !ok {
				return p.errorf("Disk %q names file %q, which References does not list", d.ID, d.FileRef)
			}
		}
		capacity, err := quantity(d.Capacity, d.Units, 1)
		if err != nil {
			return p.errorf("Disk %q capacity: %v", d.ID, err)
		}
		disks[d.ID] = len(p.env.Disks)
		p.env.Disks = append(p.env.Disks, Disk{ID: d.ID, FileRef: d.FileRef, Capacity: capacity, Format: d.Format})
	}
	systems := x.Systems
	for _, c := range x.Collection {
		systems = append(systems, c.Systems...)
	}
	if len(systems) == 0 {
		return p.errorf("no VirtualSystem")
	}
	if len(systems) > 1 {
		p.warnf("%d virtual systems; only the first (%q) is read", len(systems), systems[0].ID)
	}
	return p.system(&systems[0], files, disks)
}

func (p *parser) system(x *xSys, files, disks map[string]int) error {
	s := &p.env.System
	s.ID = x.ID
	s.Name = strings.TrimSpace(x.Name)
	if s.Name == "" {
		s.Name = x.ID
	}
	if len(x.OS) > 0 {
		s.OSType = x.OS[0].OSType
	}
	if len(x.Hardware) == 0 {
		return p.errorf("virtual system %q has no VirtualHardwareSection", x.ID)
	}
	hw := &x.Hardware[0]
	for _, c := range append(append([]xConfig(nil), hw.Config...), hw.ExtraConfig...) {
		v := strings.ToLower(strings.TrimSpace(c.Value))
		switch strings.ToLower(c.Key) {
		case "firmware":
			if v == "efi" || v == "bios" {
				s.Firmware = v
			} else {
				p.warnf("firmware %q not understood", c.Value)
			}
		case "bootoptions.efisecurebootenabled", "uefi.secureboot.enabled":
			s.SecureBoot = v == "true"
		}
	}
	items := append(append(append([]xItem(nil), hw.Items...), hw.Storage...), hw.Ethernet...)
	ctrls := make(map[string]xItem)
	for _, it := range items {
		if it.InstanceID != "" {
			ctrls[strings.TrimSpace(it.InstanceID)] = it
		}
	}
	used := make(map[string]bool)
	for _, it := range items {
		rt := strings.TrimSpace(it.ResourceType)
		switch rt {
		case "3":
			n, err := quantity(it.VirtualQuantity, "", 1)
			if err != nil || n <= 0 || n > 4096 {
				return p.errorf("CPU item %q: VirtualQuantity %q", it.InstanceID, it.VirtualQuantity)
			}
			s.CPUs = int(n)
			if it.CoresPerSocket != "" {
				c, err := strconv.Atoi(strings.TrimSpace(it.CoresPerSocket))
				if err != nil || c <= 0 || c > s.CPUs {
					p.warnf("CoresPerSocket %q ignored", it.CoresPerSocket)
				} else {
					s.CoresPerSocket = c
				}
			}
		case "4":
			units := it.AllocationUnits
			if strings.TrimSpace(units) == "" {
				units = "byte * 2^20"
			}
			b, err := quantity(it.VirtualQuantity, units, 1)
			if err != nil || b <= 0 {
				return p.errorf("memory item %q: %q %q: %v", it.InstanceID, it.VirtualQuantity, it.AllocationUnits, err)
			}
			s.MemoryMiB = b >> 20
		case "10":
			nic := NIC{Model: strings.ToLower(strings.TrimSpace(it.ResourceSubType))}
			if len(it.Connection) > 0 {
				nic.Network = strings.TrimSpace(it.Connection[0])
			}
			if a := strings.TrimSpace(it.Address); a != "" {
				if hw, err := net.ParseMAC(a); err == nil && len(hw) == 6 {
					nic.MAC = hw.String()
				} else {
					p.warnf("ethernet item %q: address %q is not a MAC; ignored", it.InstanceID, a)
				}
			}
			s.NICs = append(s.NICs, nic)
		case "17":
			a, err := p.attachment(it, ctrls, files, disks)
			if err != nil {
				return err
			}
			if a.DiskID != "" {
				if used[a.DiskID] {
					return p.errorf("disk %q attached twice", a.DiskID)
				}
				used[a.DiskID] = true
			}
			s.Disks = append(s.Disks, a)
		}
	}
	for _, d := range p.env.Disks {
		if !used[d.ID] {
			p.warnf("disk %q is in DiskSection but attached to no controller; ignored", d.ID)
		}
	}
	return nil
}

func (p *parser) attachment(it xItem, ctrls map[string]xItem, files, disks map[string]int) (Attachment, error) {
	var a Attachment
	if len(it.HostResource) == 0 {
		return a, p.errorf("disk item %q has no HostResource", it.InstanceID)
	}
	ref := strings.TrimPrefix(strings.TrimSpace(it.HostResource[0]), "ovf:")
	switch {
	case strings.HasPrefix(ref, "/disk/"):
		i, ok := disks[ref[len("/disk/"):]]
		if !ok {
			return a, p.errorf("disk item %q: HostResource %q names no disk of DiskSection", it.InstanceID, it.HostResource[0])
		}
		d := p.env.Disks[i]
		a.DiskID, a.Capacity = d.ID, d.Capacity
		if d.FileRef != "" {
			f := p.env.Files[files[d.FileRef]]
			a.File = &f
		}
	case strings.HasPrefix(ref, "/file/"):
		i, ok := files[ref[len("/file/"):]]
		if !ok {
			return a, p.errorf("disk item %q: HostResource %q names no file of References", it.InstanceID, it.HostResource[0])
		}
		f := p.env.Files[i]
		a.File = &f
	default:
		return a, p.errorf("disk item %q: HostResource %q is neither ovf:/disk/ID nor ovf:/file/ID", it.InstanceID, it.HostResource[0])
	}
	unit, err := smallInt(it.AddressOnParent)
	if err != nil {
		return a, p.errorf("disk item %q: AddressOnParent %q", it.InstanceID, it.AddressOnParent)
	}
	a.Unit = unit
	if c, ok := ctrls[strings.TrimSpace(it.Parent)]; ok {
		a.Controller = controllerKind(c)
		bus, err := smallInt(c.Address)
		if err != nil {
			return a, p.errorf("controller item %q: Address %q", c.InstanceID, c.Address)
		}
		a.Bus = bus
	}
	return a, nil
}

func controllerKind(c xItem) string {
	sub := strings.ToLower(c.ResourceSubType)
	switch strings.TrimSpace(c.ResourceType) {
	case "5":
		return "ide"
	case "6":
		return "scsi"
	case "20":
		switch {
		case strings.Contains(sub, "nvme"):
			return "nvme"
		case strings.Contains(sub, "sata"), strings.Contains(sub, "ahci"):
			return "sata"
		}
	}
	return ""
}

func smallInt(s string) (int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 1<<16 {
		return 0, fmt.Errorf("bad number %q", s)
	}
	return n, nil
}

func parseCount(s, what string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%s %q is not a byte count", what, s)
	}
	return n, nil
}

// quantity multiplies a count by its allocation units ("byte", "byte * 2^20", "byte*10^9",
// "KB", "MegaBytes", …); units "" means def. The result must fit in an int64.
func quantity(v, units string, def int64) (int64, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a count", v)
	}
	mul := def
	if strings.TrimSpace(units) != "" {
		mul, err = unitFactor(units)
		if err != nil {
			return 0, err
		}
	}
	if mul != 0 && n > math.MaxInt64/mul {
		return 0, fmt.Errorf("%s %s overflows", v, units)
	}
	return n * mul, nil
}

func unitFactor(units string) (int64, error) {
	u := strings.ToLower(strings.Join(strings.Fields(units), ""))
	switch u {
	case "byte", "bytes":
		return 1, nil
	case "kb", "kilobytes", "kilobyte":
		return 1 << 10, nil
	case "mb", "megabytes", "megabyte":
		return 1 << 20, nil
	case "gb", "gigabytes", "gigabyte":
		return 1 << 30, nil
	case "tb", "terabytes", "terabyte":
		return 1 << 40, nil
	}
	for _, base := range []struct {
		prefix string
		b      int64
	}{{"byte*2^", 2}, {"byte*10^", 10}} {
		if rest, ok := strings.CutPrefix(u, base.prefix); ok {
			e, err := strconv.Atoi(rest)
			if err != nil || e < 0 || e > 62 {
				return 0, fmt.Errorf("allocation units %q", units)
			}
			f := int64(1)
			for range e {
				if f > math.MaxInt64/base.b {
					return 0, fmt.Errorf("allocation units %q overflow", units)
				}
				f *= base.b
			}
			return f, nil
		}
	}
	return 0, fmt.Errorf("allocation units %q not understood", units)
}

// cleanHref refuses hrefs that are URLs, absolute, or leave the package folder.
func cleanHref(h string) (string, error) {
	h = strings.TrimSpace(h)
	if h == "" {
		return "", fmt.Errorf("empty href")
	}
	if strings.Contains(h, "://") || strings.HasPrefix(h, "/") || strings.Contains(h, "\\") || strings.ContainsRune(h, 0) {
		return "", fmt.Errorf("href %q is not a file of the package", h)
	}
	c := path.Clean(h)
	if c == ".." || strings.HasPrefix(c, "../") || c == "." {
		return "", fmt.Errorf("href %q leaves the package", h)
	}
	return c, nil
}
