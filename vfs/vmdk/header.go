package vmdk

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/h2kvm/h2kvm/vfs"
)

// Hosted sparse ("KDMV") header, VMware Virtual Disk Format 5.0 §"Hosted Sparse Extent Header".
const (
	sectorSize = 512

	flagNewlineTest  = 1 << 0
	flagRedundantGD  = 1 << 1
	flagZeroedGTE    = 1 << 2
	flagCompressed   = 1 << 16
	flagMarkers      = 1 << 17
	knownIncompFlags = flagCompressed | flagMarkers

	gdAtEnd = ^uint64(0)

	maxGrainSize           = 0x200000 // sectors (1 GiB), qemu's limit
	maxCompressedGrainSize = 0x2000   // sectors (4 MiB): inflated grains are held in memory
	maxGTEsPerGT           = 4096
	maxGDEntries           = 4 << 20 // a 16 MiB grain directory; 128 TiB at default geometry
	maxDescriptorSectors   = MaxDescriptorSize / sectorSize
)

var kdmvMagic = []byte("KDMV")

// sparseHeader is the decoded 512-byte KDMV header.
type sparseHeader struct {
	version          uint32
	flags            uint32
	capacity         uint64 // sectors
	grainSize        uint64 // sectors
	descriptorOffset uint64 // sectors
	descriptorSize   uint64 // sectors
	numGTEsPerGT     uint32
	rgdOffset        uint64 // sectors
	gdOffset         uint64 // sectors, or gdAtEnd
	overHead         uint64 // sectors
	uncleanShutdown  bool
	compressAlgo     uint16
}

func (h *sparseHeader) compressed() bool { return h.flags&flagCompressed != 0 }
func (h *sparseHeader) markers() bool    { return h.flags&flagMarkers != 0 }
func (h *sparseHeader) redundant() bool  { return h.flags&flagRedundantGD != 0 }
func (h *sparseHeader) grainBytes() int64 {
	return int64(h.grainSize) * sectorSize
}

// gtCoverage is the number of sectors one grain table maps.
func (h *sparseHeader) gtCoverage() uint64 { return uint64(h.numGTEsPerGT) * h.grainSize }

// gdEntries is the number of grain directory entries needed to cover capacity.
func (h *sparseHeader) gdEntries() uint64 {
	c := h.gtCoverage()
	return (h.capacity + c - 1) / c
}

func isPow2(v uint64) bool { return v != 0 && v&(v-1) == 0 }

// parseSparseHeader decodes and checks a KDMV header. It checks only what the header alone can
// tell; checks against the file size are made by the caller.
func parseSparseHeader(b []byte) (sparseHeader, error) {
	var h sparseHeader
	if len(b) < sectorSize {
		return h, fmt.Errorf("sparse header: %d bytes, need %d: %w", len(b), sectorSize, vfs.ErrTruncated)
	}
	if !bytes.Equal(b[:4], kdmvMagic) {
		return h, fmt.Errorf("sparse header: magic %q, want \"KDMV\": %w", b[:4], vfs.ErrCorrupt)
	}
	le := binary.LittleEndian
	h.version = le.Uint32(b[4:])
	h.flags = le.Uint32(b[8:])
	h.capacity = le.Uint64(b[12:])
	h.grainSize = le.Uint64(b[20:])
	h.descriptorOffset = le.Uint64(b[28:])
	h.descriptorSize = le.Uint64(b[36:])
	h.numGTEsPerGT = le.Uint32(b[44:])
	h.rgdOffset = le.Uint64(b[48:])
	h.gdOffset = le.Uint64(b[56:])
	h.overHead = le.Uint64(b[64:])
	h.uncleanShutdown = b[72] != 0
	h.compressAlgo = le.Uint16(b[77:])

	switch {
	case h.version < 1 || h.version > 3:
		return h, fmt.Errorf("sparse header: version %d not 1..3: %w", h.version, vfs.ErrUnsupported)
	case h.flags&0xffff0000&^knownIncompFlags != 0:
		return h, fmt.Errorf("sparse header: unknown incompatible flags %#x: %w", h.flags, vfs.ErrUnsupported)
	case h.flags&flagNewlineTest != 0 && !bytes.Equal(b[73:77], []byte("\n \r\n")):
		return h, fmt.Errorf("sparse header: newline detector %q damaged (file copied in text mode?): %w", b[73:77], vfs.ErrCorrupt)
	case !isPow2(h.grainSize) || h.grainSize > maxGrainSize:
		return h, fmt.Errorf("sparse header: grain size %d sectors not a power of 2 up to %d: %w", h.grainSize, maxGrainSize, vfs.ErrCorrupt)
	case !isPow2(uint64(h.numGTEsPerGT)) || h.numGTEsPerGT > maxGTEsPerGT:
		return h, fmt.Errorf("sparse header: %d entries per grain table, want a power of 2 up to %d: %w", h.numGTEsPerGT, maxGTEsPerGT, vfs.ErrCorrupt)
	case h.capacity > MaxCapacity/sectorSize:
		return h, fmt.Errorf("sparse header: capacity %d sectors exceeds %d bytes: %w", h.capacity, int64(MaxCapacity), vfs.ErrCorrupt)
	case h.gdEntries() > maxGDEntries:
		return h, fmt.Errorf("sparse header: %d grain directory entries exceed %d: %w", h.gdEntries(), maxGDEntries, vfs.ErrCorrupt)
	case h.descriptorOffset != 0 && (h.descriptorSize == 0 || h.descriptorSize > maxDescriptorSectors):
		return h, fmt.Errorf("sparse header: descriptor of %d sectors (max %d): %w", h.descriptorSize, maxDescriptorSectors, vfs.ErrCorrupt)
	}
	if h.compressed() {
		if h.compressAlgo != 1 {
			return h, fmt.Errorf("sparse header: compression algorithm %d (only 1, deflate): %w", h.compressAlgo, vfs.ErrUnsupported)
		}
		if !h.markers() {
			// qemu and open-vmdk disagree on this layout and VMware never writes it.
			return h, fmt.Errorf("sparse header: compressed grains without markers: %w", vfs.ErrUnsupported)
		}
		if h.grainSize > maxCompressedGrainSize {
			return h, fmt.Errorf("sparse header: compressed grain of %d sectors exceeds %d: %w", h.grainSize, maxCompressedGrainSize, vfs.ErrUnsupported)
		}
	}
	return h, nil
}

// Stream markers (streamOptimized), one sector each.
const (
	markerEOS    = 0
	markerGT     = 1
	markerGD     = 2
	markerFooter = 3
	markerProg   = 4 // open-vmdk's progress marker
)

// marker is a decoded stream marker. For a grain marker size != 0 and lba is the grain's first
// sector; for a metadata marker size == 0, val counts the metadata sectors that follow and typ
// says what they are.
type marker struct {
	val  uint64 // lba for grain markers
	size uint32
	typ  uint32
}

func parseMarker(b []byte) (marker, error) {
	if len(b) < 16 {
		return marker{}, fmt.Errorf("stream marker: %d bytes: %w", len(b), vfs.ErrTruncated)
	}
	le := binary.LittleEndian
	m := marker{val: le.Uint64(b), size: le.Uint32(b[8:])}
	if m.size == 0 {
		m.typ = le.Uint32(b[12:])
		if m.typ > markerProg {
			return m, fmt.Errorf("stream marker: unknown type %d: %w", m.typ, vfs.ErrCorrupt)
		}
	}
	return m, nil
}

// parseFooter checks the last three sectors of a stream (footer marker, footer header, EOS
// marker) and returns the footer header.
func parseFooter(b []byte) (sparseHeader, error) {
	if len(b) != 3*sectorSize {
		return sparseHeader{}, fmt.Errorf("stream footer: %d bytes: %w", len(b), vfs.ErrTruncated)
	}
	fm, err := parseMarker(b)
	if err != nil || fm.size != 0 || fm.typ != markerFooter {
		return sparseHeader{}, fmt.Errorf("stream footer: no footer marker 1536 bytes before the end: %w", vfs.ErrTruncated)
	}
	eos, err := parseMarker(b[2*sectorSize:])
	if err != nil || eos.size != 0 || eos.typ != markerEOS || eos.val != 0 {
		return sparseHeader{}, fmt.Errorf("stream footer: no end-of-stream marker in the last sector: %w", vfs.ErrTruncated)
	}
	h, err := parseSparseHeader(b[sectorSize : 2*sectorSize])
	if err != nil {
		return h, fmt.Errorf("stream footer: %w", err)
	}
	if h.gdOffset == gdAtEnd {
		return h, fmt.Errorf("stream footer: grain directory offset not set: %w", vfs.ErrCorrupt)
	}
	return h, nil
}
