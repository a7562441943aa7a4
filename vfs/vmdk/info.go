package vmdk

import (
	"context"
	"fmt"
	"strconv"

	"github.com/h2kvm/h2kvm/vfs"
)

// The info types are the generic ones of package vfs, so `h2kvm info` and the daemon need not
// name this package.
type (
	ChainInfo  = vfs.ChainInfo
	LinkInfo   = vfs.LinkInfo
	Geometry   = vfs.Geometry
	ExtentInfo = vfs.ExtentInfo
)

// noter is implemented by extents that have facts worth showing (a redundant table used, a
// truncated stream).
type noter interface{ extentNotes() []string }

// Info describes every link. The first call reads every distinct grain table once to count
// allocated bytes, so on a large remote chain it costs one read per grain table (at most the
// size of each file); the counts are remembered, so later calls read nothing.
func (c *Chain) Info(ctx context.Context) (ChainInfo, error) {
	ci := ChainInfo{File: c.links[0].name, Format: FormatName, VirtualSize: c.size, Warnings: append([]string(nil), c.warnings...)}
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
