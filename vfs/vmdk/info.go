package vmdk

import (
	"context"
	"fmt"
	"strconv"
)

// ChainInfo describes a chain for `h2kvm info` (like `qemu-img info --backing-chain`).
type ChainInfo struct {
	File        string     `json:"file"`
	VirtualSize int64      `json:"virtual_size"`
	Links       []LinkInfo `json:"links"` // Links[0] is the top, the last one the base
	Warnings    []string   `json:"warnings,omitempty"`
}

// LinkInfo describes one link of a chain.
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

// Geometry is the CHS geometry from the disk database.
type Geometry struct {
	Cylinders int64 `json:"cylinders"`
	Heads     int64 `json:"heads"`
	Sectors   int64 `json:"sectors"`
}

// ExtentInfo describes one extent of a link.
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

// noter is implemented by extents that have facts worth showing (a redundant table used, a
// truncated stream).
type noter interface{ extentNotes() []string }

// Info describes every link. It reads every grain table to count allocated bytes, so on a large
// remote chain it costs one read per grain table.
func (c *Chain) Info(ctx context.Context) (ChainInfo, error) {
	ci := ChainInfo{File: c.links[0].name, VirtualSize: c.size, Warnings: append([]string(nil), c.warnings...)}
	for d, l := range c.links {
		li := LinkInfo{Depth: d, File: l.name, EmbeddedDescriptor: l.embedded, VirtualSize: l.size}
		if d < len(c.parents) {
			li.Parent = c.parents[d]
		}
		if ds := l.desc; ds != nil {
			li.DescriptorVersion = ds.Version
			li.Encoding = ds.Encoding
			li.CreateType = ds.CreateType
			li.CID = fmt.Sprintf("%08x", ds.CID)
			li.ParentCID = fmt.Sprintf("%08x", ds.ParentCID)
			li.ParentHint = ds.ParentFileNameHint
			li.AdapterType = ds.Get("adapterType")
			li.HWVersion = ds.Get("virtualHWVersion")
			li.UUID = ds.Get("uuid")
			li.Geometry = geometry(ds)
			if len(ds.DDB) > 0 {
				li.DDB = ds.DDB
			}
		}
		for _, e := range l.extents {
			alloc, err := e.r.allocated(ctx)
			if err != nil {
				return ci, fmt.Errorf("vmdk: %s: %w", l.name, err)
			}
			ei := ExtentInfo{
				Access: string(e.line.Access), Type: e.line.Type, Format: e.r.format(), File: e.file,
				Start: e.start, VirtualSize: e.n, FileOffset: e.line.Offset * sectorSize,
				FileSize: e.fileSize, AllocatedBytes: alloc,
			}
			if n, ok := e.r.(noter); ok {
				ei.Notes = n.extentNotes()
			}
			li.AllocatedBytes += ei.AllocatedBytes
			li.Extents = append(li.Extents, ei)
		}
		ci.Links = append(ci.Links, li)
	}
	return ci, nil
}

func geometry(d *Descriptor) *Geometry {
	c, err1 := strconv.ParseInt(d.Get("geometry.cylinders"), 10, 64)
	h, err2 := strconv.ParseInt(d.Get("geometry.heads"), 10, 64)
	s, err3 := strconv.ParseInt(d.Get("geometry.sectors"), 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return nil
	}
	return &Geometry{Cylinders: c, Heads: h, Sectors: s}
}
