package vfs

// ChainInfo describes an opened disk and its chain of links for `h2kvm info` (like
// `qemu-img info --backing-chain`) and the control API. Its JSON form is part of both
// interfaces: fields are only ever added.
type ChainInfo struct {
	File        string     `json:"file"`
	Format      string     `json:"format,omitempty"` // Format.Name of the format that opened it
	VirtualSize int64      `json:"virtual_size"`
	Links       []LinkInfo `json:"links"` // Links[0] is the top, the last one the base
	Warnings    []string   `json:"warnings,omitempty"`
}

// LinkInfo describes one link of a chain. Fields a format does not have stay empty; the
// descriptor, CID and DDB fields are VMDK's.
type LinkInfo struct {
	Depth              int               `json:"depth"`
	File               string            `json:"file"`
	EmbeddedDescriptor bool              `json:"embedded_descriptor"`
	DescriptorVersion  int               `json:"descriptor_version,omitempty"`
	Encoding           string            `json:"encoding,omitempty"`
	CreateType         string            `json:"create_type,omitempty"`
	CID                string            `json:"cid,omitempty"`
	ParentCID          string            `json:"parent_cid,omitempty"`
	ParentHint         string            `json:"parent_file_name_hint,omitempty"`
	Parent             string            `json:"parent,omitempty"` // resolved location of the parent
	VirtualSize        int64             `json:"virtual_size"`
	AllocatedBytes     int64             `json:"allocated_bytes"`
	AdapterType        string            `json:"adapter_type,omitempty"`
	HWVersion          string            `json:"virtual_hw_version,omitempty"`
	UUID               string            `json:"uuid,omitempty"`
	Geometry           *Geometry         `json:"geometry,omitempty"`
	DDB                map[string]string `json:"ddb,omitempty"`
	Extents            []ExtentInfo      `json:"extents"`
}

// Geometry is a disk's CHS geometry as its image records it.
type Geometry struct {
	Cylinders int64 `json:"cylinders"`
	Heads     int64 `json:"heads"`
	Sectors   int64 `json:"sectors"`
}

// ExtentInfo describes one extent (a file or a range of one) of a link.
type ExtentInfo struct {
	Access         string   `json:"access"`         // RW, RDONLY, NOACCESS
	Type           string   `json:"type"`           // descriptor type: FLAT, SPARSE, VMFSSPARSE, SESPARSE, ZERO, ...
	Format         string   `json:"format"`         // on-disk format read: flat, sparse, stream, cowd, sesparse, zero
	File           string   `json:"file,omitempty"` // resolved location
	Start          int64    `json:"start"`          // byte offset of the extent in the link
	VirtualSize    int64    `json:"virtual_size"`
	FileOffset     int64    `json:"file_offset,omitempty"` // bytes into File (flat extents)
	FileSize       int64    `json:"file_size,omitempty"`
	AllocatedBytes int64    `json:"allocated_bytes"` // bytes of grains present (flat: the whole extent)
	Notes          []string `json:"notes,omitempty"` // fallbacks used, truncation found
}
