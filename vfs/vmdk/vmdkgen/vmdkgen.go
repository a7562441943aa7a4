package vmdkgen

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

const sector = 512

// NoParentCID is the parentCID of a link without parent.
const NoParentCID uint32 = 0xffffffff

// Write is data at a byte offset of the link's virtual disk.
type Write struct {
	Off  int64
	Data []byte
}

// Range is a byte range of the virtual disk. Ranges used for zero marking are widened to whole
// grains.
type Range struct {
	Off, Len int64
}

// Link describes one link to write.
type Link struct {
	// Name is the stem of the files: NAME.vmdk (descriptor) and NAME-delta.vmdk (COWD) or
	// NAME-sesparse.vmdk (seSparse).
	Name string
	// ParentName is the parent's descriptor, relative to the folder; "" writes a link without
	// parent (parentCID ffffffff, no parentFileNameHint).
	ParentName string
	// ParentCID must equal the parent's CID for qemu (and VMware) to read through to it.
	ParentCID uint32
	// CID of the new link; 0 derives one from the content.
	CID uint32
	// VirtualSize in bytes, a positive multiple of 512.
	VirtualSize int64
	// Writes are applied in order; later writes win.
	Writes []Write
	// Zeros are grains marked as reading zeros (they hide the parent).
	Zeros []Range
	// Unmapped are grains marked SCSI-unmapped (seSparse only; they read as zeros).
	Unmapped []Range
	// Parent, when set, supplies the parent's virtual bytes to fill the part of a written
	// grain that no write covers. Reads past its end give zeros.
	Parent io.ReaderAt
	// GrainSectors is the COWD grain size in sectors (default 1). seSparse grains are always 8.
	GrainSectors uint32
	// Reverse lays grains (and seSparse grain tables) out in reverse guest order, so that
	// neighbouring guest grains are not neighbours in the file.
	Reverse bool
}

// Files names what a Write function wrote.
type Files struct {
	Descriptor string // path of NAME.vmdk
	Extent     string // path of the extent file
	CID        uint32
	GrainSize  int64 // bytes
}

type grainKind uint8

const (
	kindData grainKind = iota
	kindZero
	kindUnmapped
)

type grain struct {
	kind grainKind
	buf  []byte // kindData only
}

// grains builds the content of every touched grain.
func (l *Link) grains(grainSize int64) (map[int64]*grain, error) {
	if l.VirtualSize <= 0 || l.VirtualSize%sector != 0 {
		return nil, fmt.Errorf("vmdkgen: virtual size %d is not a positive multiple of %d", l.VirtualSize, sector)
	}
	if l.Name == "" || strings.ContainsAny(l.Name, `/\"`) {
		return nil, fmt.Errorf("vmdkgen: bad link name %q", l.Name)
	}
	gs := map[int64]*grain{}
	mark := func(r Range, k grainKind) error {
		if r.Off < 0 || r.Len < 0 || r.Off+r.Len > l.VirtualSize {
			return fmt.Errorf("vmdkgen: range %d+%d outside virtual size %d", r.Off, r.Len, l.VirtualSize)
		}
		for g := r.Off / grainSize; g*grainSize < r.Off+r.Len; g++ {
			gs[g] = &grain{kind: k}
		}
		return nil
	}
	for _, r := range l.Zeros {
		if err := mark(r, kindZero); err != nil {
			return nil, err
		}
	}
	for _, r := range l.Unmapped {
		if err := mark(r, kindUnmapped); err != nil {
			return nil, err
		}
	}
	for _, w := range l.Writes {
		if w.Off < 0 || w.Off+int64(len(w.Data)) > l.VirtualSize {
			return nil, fmt.Errorf("vmdkgen: write of %d bytes at %d outside virtual size %d", len(w.Data), w.Off, l.VirtualSize)
		}
		for pos := w.Off; pos < w.Off+int64(len(w.Data)); {
			g := pos / grainSize
			gr := gs[g]
			if gr == nil || gr.kind != kindData {
				buf := make([]byte, grainSize)
				if gr == nil && l.Parent != nil {
					if err := readParent(l.Parent, buf, g*grainSize); err != nil {
						return nil, err
					}
				}
				gr = &grain{kind: kindData, buf: buf}
				gs[g] = gr
			}
			n := copy(gr.buf[pos-g*grainSize:], w.Data[pos-w.Off:])
			pos += int64(n)
		}
	}
	return gs, nil
}

func readParent(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("vmdkgen: reading parent at %d: %w", off, err)
	}
	clear(p[n:])
	return nil
}

// Expected returns the bytes the link reads as over parent (the parent's virtual bytes; a
// shorter parent reads as zeros past its end), for a format with the given grain size.
func (l *Link) Expected(parent []byte, grainSize int64) ([]byte, error) {
	gs, err := l.grains(grainSize)
	if err != nil {
		return nil, err
	}
	out := make([]byte, l.VirtualSize)
	copy(out, parent)
	for g, gr := range gs {
		dst := out[g*grainSize : min((g+1)*grainSize, l.VirtualSize)]
		if gr.kind == kindData {
			copy(dst, gr.buf)
		} else {
			clear(dst)
		}
	}
	return out, nil
}

func (l *Link) cid(content []byte) uint32 {
	if l.CID != 0 {
		return l.CID
	}
	c := crc32.ChecksumIEEE(content) ^ crc32.ChecksumIEEE([]byte(l.Name))
	if c == 0 || c == NoParentCID || c == 0xfffffffe {
		c = 1
	}
	return c
}

// descriptor returns the text of the link's descriptor.
func (l *Link) descriptor(cid uint32, createType, extentType, extentFile string, ddb ...string) string {
	var b strings.Builder
	parentCID := NoParentCID
	if l.ParentName != "" {
		parentCID = l.ParentCID
	}
	// qemu finds keys with strstr and expects `key="value"` with nothing around '=': keep CID
	// before parentCID and write exactly this shape.
	fmt.Fprintf(&b, "# Disk DescriptorFile\nversion=1\nencoding=\"UTF-8\"\nCID=%08x\nparentCID=%08x\n", cid, parentCID)
	fmt.Fprintf(&b, "isNativeSnapshot=\"no\"\ncreateType=\"%s\"\n", createType)
	if l.ParentName != "" {
		fmt.Fprintf(&b, "parentFileNameHint=\"%s\"\n", l.ParentName)
	}
	fmt.Fprintf(&b, "# Extent description\nRW %d %s \"%s\"\n\n", l.VirtualSize/sector, extentType, extentFile)
	fmt.Fprintf(&b, "# The Disk Data Base \n#DDB\n\nddb.longContentID = \"%024x%08x\"\n", 0, cid)
	for _, d := range ddb {
		b.WriteString(d + "\n")
	}
	return b.String()
}

// sortedGrains returns the grain indices in file order.
func sortedGrains(gs map[int64]*grain, pred func(*grain) bool, reverse bool) []int64 {
	var idx []int64
	for g, gr := range gs {
		if pred(gr) {
			idx = append(idx, g)
		}
	}
	slices.Sort(idx)
	if reverse {
		slices.Reverse(idx)
	}
	return idx
}

// fileWriter writes a file sequentially, padding to sector positions.
type fileWriter struct {
	f   *os.File
	w   *bufio.Writer
	pos int64
	err error
}

func createFile(path string) (*fileWriter, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("vmdkgen: %w", err)
	}
	return &fileWriter{f: f, w: bufio.NewWriterSize(f, 1<<20)}, nil
}

// at pads with zeros up to byte off, then writes p.
func (fw *fileWriter) at(off int64, p []byte) {
	if fw.err != nil {
		return
	}
	if off < fw.pos {
		fw.err = fmt.Errorf("vmdkgen: internal: write at %d behind %d", off, fw.pos)
		return
	}
	if off > fw.pos {
		_, fw.err = fw.w.Write(make([]byte, off-fw.pos))
		fw.pos = off
	}
	if fw.err == nil {
		_, fw.err = fw.w.Write(p)
		fw.pos += int64(len(p))
	}
}

func (fw *fileWriter) close(size int64) error {
	if fw.err == nil && size > fw.pos {
		fw.at(size, nil)
	}
	if fw.err == nil {
		fw.err = fw.w.Flush()
	}
	if err := fw.f.Close(); fw.err == nil {
		fw.err = err
	}
	if fw.err != nil {
		return fmt.Errorf("vmdkgen: writing %s: %w", fw.f.Name(), fw.err)
	}
	return nil
}

// grainData returns the buffer of grain g for writing, at most grainSize bytes.
func grainData(gs map[int64]*grain, g, grainSize int64) []byte {
	if gr := gs[g]; gr.kind == kindData {
		return gr.buf
	}
	return make([]byte, grainSize)
}

func writeDescriptor(dir string, l *Link, text string) (string, error) {
	p := filepath.Join(dir, l.Name+".vmdk")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		return "", fmt.Errorf("vmdkgen: %w", err)
	}
	return p, nil
}

// ReadCID returns the CID of a VMDK descriptor file, or of the descriptor embedded in a
// hosted sparse (KDMV) file, as qemu-img create writes them.
func ReadCID(path string) (uint32, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("vmdkgen: %w", err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	n, err := f.ReadAt(buf, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return 0, fmt.Errorf("vmdkgen: %s: %w", path, err)
	}
	buf = buf[:n]
	if bytes.HasPrefix(buf, []byte("KDMV")) && len(buf) >= 44 {
		off := int64(binary.LittleEndian.Uint64(buf[28:])) * sector
		size := int64(binary.LittleEndian.Uint64(buf[36:])) * sector
		if off <= 0 || off+size > int64(len(buf)) {
			return 0, fmt.Errorf("vmdkgen: %s: no embedded descriptor", path)
		}
		buf = buf[off : off+size]
	}
	for line := range strings.SplitSeq(string(buf), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if ok && strings.TrimSpace(k) == "CID" {
			c, err := strconv.ParseUint(strings.Trim(strings.TrimSpace(v), `"`), 16, 32)
			if err != nil {
				return 0, fmt.Errorf("vmdkgen: %s: CID %q: %w", path, v, err)
			}
			return uint32(c), nil
		}
	}
	return 0, fmt.Errorf("vmdkgen: %s: no CID line", path)
}
