package vmdk

// The seSparse extent reader (ESXi 6.5+ / VMFS-6 snapshot deltas). VMware has not published
// the format; the checks follow qemu's reader, which is the de-facto specification: anything
// it refuses, this refuses too. The grain-map engine is shared with COWD (cowd.go).

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/h2kvm/h2kvm/vfs"
)

const (
	esxSEConstMagic    = 0x00000000cafebabe
	esxSEVolatileMagic = 0x00000000cafecafe
	esxSEVersion       = 0x0000000200000001 // "2.1"
	esxSEGrainSectors  = 8                  // the only grain size (4 KiB)
	esxSEGTSectors     = 64                 // the only grain table size (4096 u64 entries)
	esxSEGTEntries     = esxSEGTSectors * esxSector / 8

	// Grain directory entries: top 32 bits 0x10000000 = table allocated, low 32 bits its index.
	esxSEGDAllocated = 0x1000000000000000
	// Grain table entry types, in the top nibble.
	esxSETypeMask      = 0xf000000000000000
	esxSEUnallocated   = 0x0000000000000000
	esxSEUnmapped      = 0x1000000000000000
	esxSEZero          = 0x2000000000000000
	esxSEAllocated     = 0x3000000000000000
	esxSEMaxSectorAddr = 0xffffffff // qemu keeps grain table sectors in 32 bits
)

// esxSESparseHeader is the constant header (sector 0). All offsets and sizes are in sectors.
type esxSESparseHeader struct {
	capacity                               uint64
	volatileOffset, volatileSize           uint64
	journalHeaderOffset, journalHeaderSize uint64
	journalOffset, journalSize             uint64
	gdOffset, gdSize                       uint64
	gtOffset, gtSize                       uint64
	freeBitmapOffset, freeBitmapSize       uint64
	backmapOffset, backmapSize             uint64
	grainsOffset, grainsSize               uint64
}

// parseESXSESparseHeader decodes the constant header (512 bytes) and checks it as qemu does, plus
// the bounds that matter for reading: the grain directory must cover the capacity and lie in
// the file.
func parseESXSESparseHeader(b []byte, fileSize int64, name string) (esxSESparseHeader, error) {
	bad := func(sentinel error, format string, args ...any) (esxSESparseHeader, error) {
		return esxSESparseHeader{}, fmt.Errorf("vmdk: %s: seSparse header: %s: %w", name, fmt.Sprintf(format, args...), sentinel)
	}
	if len(b) < esxSector {
		return bad(vfs.ErrTruncated, "%d bytes, want %d", len(b), esxSector)
	}
	u := func(off int) uint64 { return binary.LittleEndian.Uint64(b[off:]) }
	if m := u(0); m != esxSEConstMagic {
		return bad(vfs.ErrCorrupt, "magic at offset 0 is %#016x, want %#016x", m, uint64(esxSEConstMagic))
	}
	if v := u(8); v != esxSEVersion {
		return bad(vfs.ErrUnsupported, "version at offset 8 is %#016x, want %#016x", v, uint64(esxSEVersion))
	}
	if g := u(24); g != esxSEGrainSectors {
		return bad(vfs.ErrUnsupported, "grain size at offset 24 is %d sectors, want %d", g, esxSEGrainSectors)
	}
	if g := u(32); g != esxSEGTSectors {
		return bad(vfs.ErrUnsupported, "grain table size at offset 32 is %d sectors, want %d", g, esxSEGTSectors)
	}
	if f := u(40); f != 0 {
		return bad(vfs.ErrUnsupported, "flags at offset 40 are %#x, want 0", f)
	}
	for off := 48; off < 80; off += 8 {
		if r := u(off); r != 0 {
			return bad(vfs.ErrUnsupported, "reserved field at offset %d is %#x, want 0", off, r)
		}
	}
	for off := 208; off < esxSector; off++ {
		if b[off] != 0 {
			return bad(vfs.ErrUnsupported, "padding byte at offset %d is %#x, want 0", off, b[off])
		}
	}
	h := esxSESparseHeader{
		capacity:            u(16),
		volatileOffset:      u(80),
		volatileSize:        u(88),
		journalHeaderOffset: u(96),
		journalHeaderSize:   u(104),
		journalOffset:       u(112),
		journalSize:         u(120),
		gdOffset:            u(128),
		gdSize:              u(136),
		gtOffset:            u(144),
		gtSize:              u(152),
		freeBitmapOffset:    u(160),
		freeBitmapSize:      u(168),
		backmapOffset:       u(176),
		backmapSize:         u(184),
		grainsOffset:        u(192),
		grainsSize:          u(200),
	}
	// The capacity is bounded like every link's (MaxCapacity); qemu's own cap, 32 Mi directory
	// entries × 16 MiB = 512 TiB, would let a header ask for a 256 MiB directory.
	const maxCapSectors = MaxCapacity / esxSector
	if h.capacity == 0 || h.capacity > maxCapSectors {
		return bad(vfs.ErrCorrupt, "capacity at offset 16 is %d sectors, want 1..%d", h.capacity, uint64(maxCapSectors))
	}
	sectors := uint64(fileSize) / esxSector
	need := (h.capacity + esxSEGTEntries*esxSEGrainSectors - 1) / (esxSEGTEntries * esxSEGrainSectors)
	if h.gdSize > esxMaxDirEntries/(esxSector/8) || h.gdSize*(esxSector/8) < need {
		return bad(vfs.ErrCorrupt, "grain directory size at offset 136 is %d sectors; capacity %d sectors needs %d entries (%d per sector)",
			h.gdSize, h.capacity, need, esxSector/8)
	}
	if h.gdOffset == 0 || h.gdOffset > sectors || (need*8+esxSector-1)/esxSector > sectors-h.gdOffset {
		return bad(vfs.ErrTruncated, "grain directory at sector %d (offset 128) lies past the end of the file (%d bytes)", h.gdOffset, fileSize)
	}
	if h.volatileOffset == 0 || h.volatileOffset >= sectors {
		return bad(vfs.ErrTruncated, "volatile header at sector %d (offset 80) lies past the end of the file (%d bytes)", h.volatileOffset, fileSize)
	}
	if h.gtOffset == 0 || h.gtOffset > esxSEMaxSectorAddr || h.grainsOffset == 0 || h.grainsOffset > 1<<53 {
		return bad(vfs.ErrCorrupt, "grain tables at sector %d (offset 144), grains at sector %d (offset 192): out of range", h.gtOffset, h.grainsOffset)
	}
	return h, nil
}

// checkESXSESparseVolatile checks the volatile header (512 bytes) as qemu does: a journal that
// awaits replay means the image is dirty and its tables cannot be trusted.
func checkESXSESparseVolatile(b []byte, off int64, name string) error {
	u := func(o int) uint64 { return binary.LittleEndian.Uint64(b[o:]) }
	if m := u(0); m != esxSEVolatileMagic {
		return fmt.Errorf("vmdk: %s: seSparse volatile header at byte %d: magic is %#016x, want %#016x: %w",
			name, off, m, uint64(esxSEVolatileMagic), vfs.ErrCorrupt)
	}
	if r := u(24); r != 0 {
		return fmt.Errorf("vmdk: %s: seSparse volatile header at byte %d: replay_journal is %d: the image is dirty and its journal must be replayed by ESXi first: %w",
			name, off, r, vfs.ErrUnsupported)
	}
	for i := 32; i < esxSector; i++ {
		if b[i] != 0 {
			return fmt.Errorf("vmdk: %s: seSparse volatile header at byte %d: padding byte %d is %#x, want 0: %w",
				name, off, i, b[i], vfs.ErrUnsupported)
		}
	}
	return nil
}

// esxSESparse is the esxFormat of a seSparse extent.
type esxSESparse struct {
	name string
	dir  []uint64 // the directory entries that cover the capacity
	h    esxSESparseHeader
}

func (s *esxSESparse) tableOffset(gdi int64) (int64, error) {
	e := s.dir[gdi]
	if e == 0 {
		return 0, nil
	}
	if e&0xffffffff00000000 != esxSEGDAllocated {
		return 0, fmt.Errorf("vmdk: %s: seSparse grain directory entry %d is %#016x, want 0 or 0x10000000xxxxxxxx: %w",
			s.name, gdi, e, vfs.ErrCorrupt)
	}
	sector := s.h.gtOffset + (e&0xffffffff)*esxSEGTSectors
	if sector > esxSEMaxSectorAddr {
		return 0, fmt.Errorf("vmdk: %s: seSparse grain directory entry %d: grain table index %d puts the table at sector %d, beyond 2^32: %w",
			s.name, gdi, e&0xffffffff, sector, vfs.ErrCorrupt)
	}
	return int64(sector) * esxSector, nil
}

func (s *esxSESparse) decode(e uint64, g int64) (esxGrainLoc, error) {
	switch e & esxSETypeMask {
	case esxSEUnallocated:
		if e != 0 {
			break
		}
		return esxGrainLoc{kind: vfs.Hole}, nil
	case esxSEUnmapped, esxSEZero:
		// qemu reads SCSI-unmapped grains as zeros without consulting the parent, like zero
		// grains.
		return esxGrainLoc{kind: vfs.Zero}, nil
	case esxSEAllocated:
		// The 60-bit grain index is stored rotated: its low 12 bits sit in bits 48..59.
		idx := (e&0x0fff000000000000)>>48 | (e&0x0000ffffffffffff)<<12
		if idx > (1<<53-s.h.grainsOffset)/esxSEGrainSectors {
			break
		}
		return esxGrainLoc{kind: vfs.Data, off: int64(s.h.grainsOffset+idx*esxSEGrainSectors) * esxSector}, nil
	}
	return esxGrainLoc{}, fmt.Errorf("vmdk: %s: seSparse grain table entry of grain %d is %#016x: not a valid entry: %w",
		s.name, g, e, vfs.ErrCorrupt)
}

// openSESparse opens a seSparse file as a whole extent with a budget of its own.
func openSESparse(ctx context.Context, src vfs.Source) (extentReader, error) {
	return openSESparseExtent(ctx, src, -1, newMetaBudget(0))
}

// openSESparseExtent opens a seSparse extent of need bytes (-1: the header's capacity),
// reading the directory entries that cover them and charging them to b. The extent owns src
// from then on (close closes it); on error the caller still owns src.
func openSESparseExtent(ctx context.Context, src vfs.Source, need int64, b *metaBudget) (extentReader, error) {
	hb := make([]byte, esxSector)
	if err := vfs.ReadFull(ctx, src, hb, 0); err != nil {
		return nil, esxWrapIO(err, "vmdk: seSparse header")
	}
	h, err := parseESXSESparseHeader(hb, src.Size(), src.Name())
	if err != nil {
		return nil, err
	}
	vb := make([]byte, esxSector)
	voff := int64(h.volatileOffset) * esxSector
	if err := vfs.ReadFull(ctx, src, vb, voff); err != nil {
		return nil, esxWrapIO(err, "vmdk: seSparse volatile header")
	}
	if err := checkESXSESparseVolatile(vb, voff, src.Name()); err != nil {
		return nil, err
	}
	capacity := int64(h.capacity) * esxSector
	if need >= 0 {
		if capacity < need {
			return nil, fmt.Errorf("vmdk: %s: seSparse header capacity is %d sectors (offset 16) but the descriptor's extent line needs %d: %w",
				src.Name(), h.capacity, need/esxSector, vfs.ErrCorrupt)
		}
		capacity = need
	}
	n := (capacity + esxSEGTEntries*esxSEGrainSectors*esxSector - 1) / (esxSEGTEntries * esxSEGrainSectors * esxSector)
	if err := b.charge("seSparse grain directory", n*8); err != nil {
		return nil, fmt.Errorf("vmdk: %s: %w", src.Name(), err)
	}
	s := &esxSESparse{name: src.Name(), dir: make([]uint64, n), h: h}
	err = readEntries(ctx, src, int64(h.gdOffset)*esxSector, n, 8, func(i int64, e uint64) { s.dir[i] = e })
	if err != nil {
		return nil, esxWrapIO(err, "vmdk: seSparse grain directory")
	}
	return &esxGrainMap{
		src:       src,
		kind:      "sesparse",
		capacity:  capacity,
		grainSize: esxSEGrainSectors * esxSector,
		perTable:  esxSEGTEntries,
		entrySize: 8,
		numTables: int64(n),
		f:         s,
		cache:     newESXTableCache(esxTableCacheSize),
	}, nil
}
