package vmdk

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"path"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/h2kvm/h2kvm/vfs"
)

// This file holds images whose headers ask for far more metadata than their size justifies
// (issue 15): each is generated here, opened, described and read, and the bytes allocated
// meanwhile are measured.

// padFile is a file whose bytes are head followed by zeros up to size: a file that is mostly
// holes on disk, without the test holding its zeros in memory.
type padFile struct {
	head []byte
	size int64
}

// padOpener serves padFiles and counts the reads made through it. Past limit reads (if set),
// every read fails, so that a test of bounded work fails fast instead of running for minutes.
type padOpener struct {
	files        map[string]padFile
	fallback     *padFile // served for every name not in files, if set
	reads, bytes atomic.Int64
	limit        int64
}

func (o *padOpener) Open(ctx context.Context, name string) (vfs.Source, error) {
	f, ok := o.files[name]
	if !ok && o.fallback != nil {
		f, ok = *o.fallback, true
	}
	if !ok {
		return nil, fmt.Errorf("open %s: %w", name, vfs.ErrNotFound)
	}
	return &padSource{f: f, name: name, o: o}, nil
}

func (o *padOpener) Resolve(base, rel string) (string, error) {
	p := path.Join(path.Dir(base), rel)
	if strings.HasPrefix(p, "..") || path.IsAbs(rel) {
		return "", fmt.Errorf("%q leaves the root: %w", rel, vfs.ErrChain)
	}
	return p, nil
}

type padSource struct {
	f    padFile
	name string
	o    *padOpener
}

func (s *padSource) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if n := s.o.reads.Add(1); s.o.limit > 0 && n > s.o.limit {
		return 0, fmt.Errorf("%s: more than %d reads", s.name, s.o.limit)
	}
	if off < 0 {
		return 0, fmt.Errorf("%s: negative offset", s.name)
	}
	if off >= s.f.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), s.f.size-off))
	s.o.bytes.Add(int64(n))
	c := 0
	if off < int64(len(s.f.head)) {
		c = copy(p[:n], s.f.head[off:])
	}
	clear(p[c:n])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (s *padSource) Size() int64  { return s.f.size }
func (s *padSource) Name() string { return s.name }
func (s *padSource) Close() error { return nil }

// allocDuring returns the bytes allocated (runtime.MemStats.TotalAlloc) while f runs.
func allocDuring(f func()) uint64 {
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// openDescribeRead opens name, describes it and reads and maps a little of it, as `h2kvm info`
// and a first client would. It returns the error of Open or Info.
func openDescribeRead(o vfs.Opener, name string) error {
	ctx := context.Background()
	c, err := Open(ctx, o, name, Options{})
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Info(ctx); err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	c.ReadAt(ctx, buf, 0)
	c.Extents(ctx, 0, c.Size())
	return nil
}

// kdmvHeader is a hosted sparse header.
type kdmvHeader struct {
	flags                                 uint32
	capacity, grainSize, gdOffset, overHd uint64
	gtes                                  uint32
}

func (h kdmvHeader) bytes() []byte {
	b := make([]byte, sectorSize)
	le := binary.LittleEndian
	copy(b, "KDMV")
	le.PutUint32(b[4:], 1)
	if h.flags&flagCompressed != 0 {
		le.PutUint32(b[4:], 3)
		le.PutUint16(b[77:], 1)
	}
	le.PutUint32(b[8:], h.flags)
	le.PutUint64(b[12:], h.capacity)
	le.PutUint64(b[20:], h.grainSize)
	le.PutUint32(b[44:], h.gtes)
	le.PutUint64(b[56:], h.gdOffset)
	le.PutUint64(b[64:], h.overHd)
	return b
}

// manyExtentsDescriptor is a descriptor of n extents e00.vmdk… of sectors each.
func manyExtentsDescriptor(n int, sectors int64) []byte {
	var d bytes.Buffer
	d.WriteString("# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"twoGbMaxExtentSparse\"\n\n")
	for i := range n {
		fmt.Fprintf(&d, "RW %d SPARSE \"e%02d.vmdk\"\n", sectors, i)
	}
	return d.Bytes()
}

// bigDirectoryExtent is a 32 MiB KDMV file, all holes after its header, whose header declares
// 2 GiB in 1-sector grains with one entry per table: a 4 Mi-entry (16 MiB) grain directory.
func bigDirectoryExtent() padFile {
	h := kdmvHeader{capacity: 4 << 20, grainSize: 1, gtes: 1, gdOffset: 1, overHd: 1 + (16<<20)/sectorSize}
	return padFile{head: h.bytes(), size: 32 << 20}
}

// manyExtents is the descriptor of issue 15: 1 KiB listing 40 extents of 32 MiB, each a
// bigDirectoryExtent.
func manyExtents(sectors int64) *padOpener {
	o := &padOpener{files: map[string]padFile{}}
	d := manyExtentsDescriptor(40, sectors)
	o.files["d/disk.vmdk"] = padFile{head: d, size: int64(len(d))}
	for i := range 40 {
		o.files[fmt.Sprintf("d/e%02d.vmdk", i)] = bigDirectoryExtent()
	}
	return o
}

// seSparseHeader is a seSparse file of the given capacity whose grain directory covers it:
// constant header, volatile header, then the directory (holes) and a grain area.
func seSparseImage(capSectors uint64) padFile {
	gdEntries := (capSectors + esxSEGTEntries*esxSEGrainSectors - 1) / (esxSEGTEntries * esxSEGrainSectors)
	gdSectors := (gdEntries*8 + esxSector - 1) / esxSector
	b := make([]byte, 2*esxSector)
	le := binary.LittleEndian
	le.PutUint64(b[0:], esxSEConstMagic)
	le.PutUint64(b[8:], esxSEVersion)
	le.PutUint64(b[16:], capSectors)
	le.PutUint64(b[24:], esxSEGrainSectors)
	le.PutUint64(b[32:], esxSEGTSectors)
	le.PutUint64(b[80:], 1)  // volatile header
	le.PutUint64(b[88:], 1)  //
	le.PutUint64(b[128:], 2) // grain directory
	le.PutUint64(b[136:], gdSectors)
	le.PutUint64(b[144:], 2+gdSectors) // grain tables
	le.PutUint64(b[152:], 64)
	le.PutUint64(b[192:], 2+gdSectors+64) // grains
	le.PutUint64(b[200:], 8)
	le.PutUint64(b[esxSector:], esxSEVolatileMagic)
	return padFile{head: b, size: int64(2+gdSectors+64+8) * esxSector}
}

// cowdImage is a COWD header of capSectors in 1-sector grains declaring dirEntries directory
// entries at sector 4, the file all holes up to the end of that directory plus one table.
func cowdImage(capSectors, dirEntries uint32) padFile {
	b := make([]byte, esxCOWDHeaderSize)
	le := binary.LittleEndian
	copy(b, esxCOWDMagic)
	le.PutUint32(b[4:], 1)
	le.PutUint32(b[8:], 3)
	le.PutUint32(b[12:], capSectors)
	le.PutUint32(b[16:], 1)
	le.PutUint32(b[20:], 4)
	le.PutUint32(b[24:], dirEntries)
	return padFile{head: b, size: esxCOWDHeaderSize + int64(dirEntries)*4 + esxCOWDGTEntries*4}
}

// markerStream is a streamOptimized file without footer or end-of-stream marker (an interrupted
// download) holding n one-sector grains, each in its own grain table: 1-sector grains and
// 4096-entry (16 KiB) tables, one marker per sector.
func markerStream(n int) padFile {
	var z bytes.Buffer
	zw := zlib.NewWriter(&z)
	zw.Write(make([]byte, sectorSize))
	zw.Close()
	h := kdmvHeader{flags: flagCompressed | flagMarkers, capacity: uint64(n) * 4096, grainSize: 1, gtes: 4096, gdOffset: gdAtEnd, overHd: 1}
	b := make([]byte, (1+n)*sectorSize)
	copy(b, h.bytes())
	for i := range n {
		m := b[(1+i)*sectorSize:]
		binary.LittleEndian.PutUint64(m, uint64(i)*4096)
		binary.LittleEndian.PutUint32(m[8:], uint32(z.Len()))
		copy(m[12:], z.Bytes())
	}
	return padFile{head: b, size: int64(len(b))}
}

// TestHeadersDoNotDriveMemory opens images whose headers ask for huge tables (issue 15 item 2)
// and holds the bytes allocated by opening, describing and reading each to 100 MiB.
func TestHeadersDoNotDriveMemory(t *testing.T) {
	const limit = 100 << 20
	for _, tc := range []struct {
		name    string
		o       *padOpener
		wantErr error // nil: the image opens
	}{
		// 40 × a 16 MiB directory (1.28 GB) though the descriptor uses 32 MiB of each.
		{"descriptor-40-extents", manyExtents(65536), nil},
		// 512 TiB: a 256 MiB directory; MaxCapacity is 64 TiB.
		{"sesparse-512TiB", &padOpener{files: map[string]padFile{"d/disk.vmdk": seSparseImage(1 << 40)}}, vfs.ErrCorrupt},
		{"sesparse-past-MaxCapacity", &padOpener{files: map[string]padFile{"d/disk.vmdk": seSparseImage(MaxCapacity/esxSector + 8)}}, vfs.ErrCorrupt},
		// A 512-byte disk declaring 32 Mi directory entries (128 MiB).
		{"cowd-512B-32Mi-entries", &padOpener{files: map[string]padFile{"d/disk.vmdk": cowdImage(1, esxMaxDirEntries)}}, nil},
		// 8 MiB of markers, each in a table of its own: 16 Ki tables of 16 KiB.
		{"stream-no-footer-table-per-marker", &padOpener{files: map[string]padFile{"d/disk.vmdk": markerStream(16 << 10)}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			n := allocDuring(func() { err = openDescribeRead(tc.o, "d/disk.vmdk") })
			t.Logf("%s: %d MiB allocated, err %v", tc.name, n>>20, err)
			switch {
			case tc.wantErr == nil && err != nil:
				t.Errorf("open: %v", err)
			case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
				t.Errorf("open: %v, want %v", err, tc.wantErr)
			}
			if n > limit {
				t.Errorf("%d MiB allocated, want at most %d MiB", n>>20, limit>>20)
			}
		})
	}
}

// TestExtentLineBoundsHeader checks that a sparse extent whose header claims less than its
// descriptor line is refused, and one that claims more reads only what the line covers.
func TestExtentLineBoundsHeader(t *testing.T) {
	ctx := context.Background()
	o := manyExtents(65536)
	c, err := Open(ctx, o, "d/disk.vmdk", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Size() != 40*32<<20 {
		t.Errorf("size %d, want %d", c.Size(), 40*32<<20)
	}
	c.Close()
	o = manyExtents(8<<20 + 1) // more than the 4 Mi sectors of each header
	if _, err := Open(ctx, o, "d/disk.vmdk", Options{}); !errors.Is(err, vfs.ErrCorrupt) {
		t.Errorf("extent line past the header's capacity: %v, want ErrCorrupt", err)
	}
}

// sharedTableCOWD is a COWD in 1-sector grains whose directory of entries (a multiple of 128)
// names one grain table entries times; the table's first 10 entries name grains. With 1 Mi
// entries it is the 4 MiB, 2 TiB file of issue 15.
func sharedTableCOWD(entries int) padFile {
	table := 4 + entries*4/esxSector // sector of the table, after the directory
	grains := table + esxCOWDGTEntries*4/esxSector
	f := cowdImage(uint32(min(int64(entries)*esxCOWDGTEntries, int64(^uint32(0)))), uint32(entries))
	b := make([]byte, (grains+10)*esxSector)
	copy(b, f.head)
	le := binary.LittleEndian
	for i := range entries {
		le.PutUint32(b[esxCOWDHeaderSize+4*i:], uint32(table))
	}
	for i := range 10 {
		le.PutUint32(b[table*esxSector+4*i:], uint32(grains+i))
	}
	return padFile{head: b, size: int64(len(b))}
}

// TestSharedGrainTables describes a COWD whose directory names one table a million times (issue
// 15 item 3): Info reads the table once, a second Info reads nothing, and a map of the whole
// disk's start reads the table once more at most.
func TestSharedGrainTables(t *testing.T) {
	ctx := context.Background()
	o := &padOpener{files: map[string]padFile{"d/disk.vmdk": sharedTableCOWD(1 << 20)}, limit: 10000}
	c, err := Open(ctx, o, "d/disk.vmdk", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	opened := o.reads.Load()
	ci, err := c.Info(ctx)
	if err != nil {
		t.Fatalf("Info: %v (%d reads)", err, o.reads.Load()-opened)
	}
	if n := o.reads.Load() - opened; n > 2 {
		t.Errorf("Info made %d reads, want the shared table read once", n)
	}
	if got := ci.Links[0].AllocatedBytes; got != 10*esxSector {
		t.Errorf("allocated %d bytes, want %d (10 grains, counted once)", got, 10*esxSector)
	}
	before := o.reads.Load()
	if _, err := c.Info(ctx); err != nil {
		t.Fatal(err)
	}
	if n := o.reads.Load() - before; n != 0 {
		t.Errorf("second Info made %d reads, want 0 (cached)", n)
	}
	// The first 64 MiB: 32 directory entries, one table.
	before = o.reads.Load()
	for pos, end := int64(0), int64(64<<20); pos < end; {
		m, err := c.Extents(ctx, pos, end-pos)
		if err != nil {
			t.Fatal(err)
		}
		pos = m[len(m)-1].End()
	}
	if n := o.reads.Load() - before; n > 1 {
		t.Errorf("mapping 64 MiB made %d reads, want the shared table read once at most", n)
	}
}

// TestOverlappingGrainTables describes a COWD whose directory names thousands of distinct
// tables one sector apart: they cannot all fit in the 4 MiB file without overlapping, so Info
// refuses the image (ErrCorrupt) instead of reading a table per entry.
func TestOverlappingGrainTables(t *testing.T) {
	ctx := context.Background()
	f := sharedTableCOWD(1 << 20)
	b := bytes.Clone(f.head)
	table := 4 + (1<<20)*4/esxSector
	for i := range 1 << 20 {
		binary.LittleEndian.PutUint32(b[esxCOWDHeaderSize+4*i:], uint32(4+i%table))
	}
	o := &padOpener{files: map[string]padFile{"d/disk.vmdk": {head: b, size: f.size}}, limit: 10000}
	c, err := Open(ctx, o, "d/disk.vmdk", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	opened := o.reads.Load()
	if _, err := c.Info(ctx); !errors.Is(err, vfs.ErrCorrupt) {
		t.Errorf("Info: %v, want ErrCorrupt", err)
	}
	if n := o.reads.Load() - opened; n > 0 {
		t.Errorf("Info made %d reads before refusing", n)
	}
}
