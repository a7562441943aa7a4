package vmdk

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"

	"golang.org/x/sync/singleflight"

	"github.com/h2kvm/h2kvm/vfs"
)

// sparseExtent reads a hosted sparse ("KDMV") extent: monolithicSparse, the pieces of
// twoGbMaxExtentSparse, KDMV deltas, and streamOptimized (compressed grains behind markers).
//
// Grain tables are loaded on first use, validated, and kept in a bounded LRU; concurrent misses
// on one table share one read. The grain directory is loaded at open.
type sparseExtent struct {
	// set once at open
	src        vfs.Source
	file       *os.File // src reopened for Chain.MapFile; nil if compressed or not local
	h          sparseHeader
	capSectors uint64 // the part of h.capacity the extent uses (the descriptor line may ask less)
	capBytes   int64
	fileSize   int64
	minGrain   uint64   // lowest sector a grain (or grain marker) may start at
	gd, rgd    []uint32 // grain directory; redundant copy (nil if absent or not trusted)
	notes      []string // facts for `h2kvm info`: fallbacks, rebuilt maps
	stream     *streamMap
	gtBytes    int64
	gts        *lru[uint32, []uint32]
	grains     *lru[uint64, []byte] // inflated grains of a compressed extent
	loadTables singleflight.Group
	alloc      allocCache

	mu        sync.Mutex
	fallbacks int // guarded by mu; grain tables read from the redundant copy
}

var _ extentReader = (*sparseExtent)(nil)

const (
	maxMapSteps    = 1 << 16 // grains (or unallocated tables) looked at by one mapRange
	maxMapTables   = 16      // allocated grain tables loaded by one mapRange (as esxMapTableBudget)
	gtCacheSize    = 256     // grain tables per extent (256 × 2 KiB at default geometry)
	grainCacheSize = 32      // inflated grains per compressed extent (2 MiB at 64 KiB grains)
)

// openSparse opens the KDMV file src as an extent of need bytes (-1: the header's capacity).
// It reads the header, the stream footer or marker map when the grain directory is at the end,
// and the grain directory entries that cover need bytes, charging them to b. A header whose
// capacity is below need is refused before any table is read.
func openSparse(ctx context.Context, src vfs.Source, need int64, b *metaBudget) (*sparseExtent, error) {
	vfs.Prioritize(src, 0, sectorSize)
	hb := make([]byte, sectorSize)
	if err := vfs.ReadFull(ctx, src, hb, 0); err != nil {
		return nil, fmt.Errorf("vmdk: %s: sparse header: %w", src.Name(), err)
	}
	h, err := parseSparseHeader(hb)
	if err != nil {
		return nil, fmt.Errorf("vmdk: %s: %w", src.Name(), err)
	}
	capSectors := h.capacity
	if need >= 0 {
		if int64(h.capacity) < need/sectorSize {
			return nil, fmt.Errorf("vmdk: %s: header capacity is %d sectors but the descriptor's extent line needs %d: %w",
				src.Name(), h.capacity, need/sectorSize, vfs.ErrCorrupt)
		}
		capSectors = uint64(need / sectorSize)
	}
	s := &sparseExtent{
		src:        src,
		h:          h,
		capSectors: capSectors,
		capBytes:   int64(capSectors) * sectorSize,
		fileSize:   src.Size(),
		minGrain:   max(h.overHead, 1),
		gtBytes:    int64(h.numGTEsPerGT) * 4,
		gts:        newLRU[uint32, []uint32](gtCacheSize),
	}
	if h.compressed() {
		s.grains = newLRU[uint64, []byte](grainCacheSize)
	}
	fileSectors := uint64(s.fileSize / sectorSize)
	if h.overHead > fileSectors {
		return nil, fmt.Errorf("vmdk: %s: file of %d bytes ends inside its metadata (overHead %d sectors): %w",
			src.Name(), s.fileSize, h.overHead, vfs.ErrTruncated)
	}
	if h.descriptorOffset != 0 && h.descriptorOffset+h.descriptorSize > fileSectors {
		return nil, fmt.Errorf("vmdk: %s: embedded descriptor at sector %d (+%d) past the end of the file (%d bytes): %w",
			src.Name(), h.descriptorOffset, h.descriptorSize, s.fileSize, vfs.ErrTruncated)
	}
	// The metadata a reader comes back to: the header, the embedded descriptor and, in hosted
	// sparse files, the grain directories and tables, all before the first grain. Tables of
	// stream-optimized files lie between the grains and are named as they are read.
	vfs.Prioritize(src, 0, int64(h.overHead)*sectorSize)
	if h.uncleanShutdown {
		s.notes = append(s.notes, "header says the file was not closed cleanly")
	}
	if h.gdOffset == gdAtEnd {
		if !h.compressed() {
			return nil, fmt.Errorf("vmdk: %s: grain directory at end in an uncompressed extent: %w", src.Name(), vfs.ErrCorrupt)
		}
		footer, ferr := s.readFooter(ctx)
		if ferr == nil {
			s.h.gdOffset = footer.gdOffset
		} else {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			// A stream without its footer (an interrupted download or export): rebuild the map
			// from the grain markers, as far as the file goes.
			sm, err := scanStream(ctx, src, &s.h, s.capSectors, b)
			if err != nil {
				return nil, fmt.Errorf("vmdk: %s: no usable footer (%v); scanning markers: %w", src.Name(), ferr, err)
			}
			s.stream = sm
			s.notes = append(s.notes, sm.describe())
			return s, nil
		}
	}
	if err := s.loadDirectories(ctx, b); err != nil {
		return nil, err
	}
	if !h.compressed() {
		s.file = localFile(src)
	}
	return s, nil
}

func (s *sparseExtent) readFooter(ctx context.Context) (sparseHeader, error) {
	if s.fileSize < 3*sectorSize {
		return sparseHeader{}, fmt.Errorf("file too short for a footer: %w", vfs.ErrTruncated)
	}
	b := make([]byte, 3*sectorSize)
	if err := vfs.ReadFull(ctx, s.src, b, s.fileSize-3*sectorSize); err != nil {
		return sparseHeader{}, err
	}
	f, err := parseFooter(b)
	if err != nil {
		return f, err
	}
	if f.capacity != s.h.capacity || f.grainSize != s.h.grainSize || f.numGTEsPerGT != s.h.numGTEsPerGT {
		return f, fmt.Errorf("footer geometry (capacity %d, grain %d, %d GTEs) differs from the header's: %w",
			f.capacity, f.grainSize, f.numGTEsPerGT, vfs.ErrCorrupt)
	}
	return f, nil
}

// gdEntries is the number of grain directory entries that cover the part of the capacity used.
func (s *sparseExtent) gdEntries() uint64 {
	c := s.h.gtCoverage()
	return (s.capSectors + c - 1) / c
}

// loadDirectories reads the grain directory and, when the primary one is unusable, falls back
// to the redundant one. Each directory read is charged to b first.
func (s *sparseExtent) loadDirectories(ctx context.Context, b *metaBudget) error {
	nbytes := int64(s.gdEntries()) * 4
	if err := b.charge("grain directory", nbytes); err != nil {
		return fmt.Errorf("vmdk: %s: %w", s.src.Name(), err)
	}
	gd, perr := s.readDirectory(ctx, s.h.gdOffset, "grain directory")
	var rgd []uint32
	var rerr error = fmt.Errorf("no redundant grain directory")
	if s.h.redundant() && s.h.rgdOffset != 0 && s.h.rgdOffset != s.h.gdOffset {
		if err := b.charge("redundant grain directory", nbytes); err != nil {
			return fmt.Errorf("vmdk: %s: %w", s.src.Name(), err)
		}
		rgd, rerr = s.readDirectory(ctx, s.h.rgdOffset, "redundant grain directory")
	}
	switch {
	case perr == nil:
		s.gd = gd
		if rerr == nil {
			s.rgd = rgd
		}
	case rerr == nil:
		s.gd = rgd
		s.notes = append(s.notes, fmt.Sprintf("primary grain directory unusable (%v); using the redundant copy", perr))
	default:
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("vmdk: %s: %w", s.src.Name(), perr)
	}
	return nil
}

// readDirectory reads the gdEntries() entries of a grain directory at sector and checks them:
// every table lies in the file, and no two entries share or overlap a table.
func (s *sparseExtent) readDirectory(ctx context.Context, sector uint64, what string) ([]uint32, error) {
	n := s.gdEntries()
	nbytes := int64(n) * 4
	off := int64(sector) * sectorSize
	if sector == 0 || sector > uint64(s.fileSize/sectorSize) || off+nbytes > s.fileSize {
		return nil, fmt.Errorf("%s at sector %d (%d bytes) past the end of the file (%d bytes): %w",
			what, sector, nbytes, s.fileSize, vfs.ErrTruncated)
	}
	vfs.Prioritize(s.src, off, nbytes)
	gd := make([]uint32, n)
	var bad error
	var tables int64
	err := readEntries(ctx, s.src, off, int64(n), 4, func(i int64, e uint64) {
		gd[i] = uint32(e)
		if err := s.checkTablePointer(gd[i]); err != nil && bad == nil {
			bad = fmt.Errorf("%s entry %d (byte %d): %w", what, i, off+4*i, err)
		}
		if e != 0 {
			tables++
		}
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if bad != nil {
		return nil, bad
	}
	if tables > s.fileSize/max(s.gtBytes, sectorSize) {
		return nil, fmt.Errorf("%s points at %d grain tables of %d bytes, more than a file of %d bytes holds without sharing or overlapping them: %w",
			what, tables, s.gtBytes, s.fileSize, vfs.ErrCorrupt)
	}
	// Shared tables: sort a copy of the (few, by the check above) pointers.
	used := make([]uint32, 0, tables)
	for _, e := range gd {
		if e != 0 {
			used = append(used, e)
		}
	}
	slices.Sort(used)
	for k := 1; k < len(used); k++ {
		if used[k] != used[k-1] {
			continue
		}
		first := slices.Index(gd, used[k])
		second := first + 1 + slices.Index(gd[first+1:], used[k])
		return nil, fmt.Errorf("%s entries %d and %d share the grain table at sector %d: %w", what, first, second, used[k], vfs.ErrCorrupt)
	}
	return gd, nil
}

func (s *sparseExtent) checkTablePointer(sec uint32) error {
	if sec == 0 {
		return nil
	}
	if int64(sec)*sectorSize+s.gtBytes > s.fileSize {
		return fmt.Errorf("grain table at sector %d past the end of the file (%d bytes): %w", sec, s.fileSize, vfs.ErrTruncated)
	}
	return nil
}

// table returns grain table gdi (nil: not allocated, every grain reads from the parent).
func (s *sparseExtent) table(ctx context.Context, gdi uint32) ([]uint32, error) {
	if s.gd[gdi] == 0 {
		return nil, nil
	}
	if t, ok := s.gts.get(gdi); ok {
		return t, nil
	}
	// One read per table however many readers miss at once; the shared read must not die with
	// the first caller's context.
	v, err, _ := s.loadTables.Do(strconv.FormatUint(uint64(gdi), 10), func() (any, error) {
		t, err := s.loadTable(context.WithoutCancel(ctx), gdi)
		if err == nil {
			s.gts.put(gdi, t)
		}
		return t, err
	})
	if err != nil {
		return nil, err
	}
	return v.([]uint32), nil
}

func (s *sparseExtent) loadTable(ctx context.Context, gdi uint32) ([]uint32, error) {
	t, err := s.readTable(ctx, s.gd[gdi])
	if err == nil {
		return t, nil
	}
	if s.rgd != nil && s.rgd[gdi] != 0 {
		if t2, err2 := s.readTable(ctx, s.rgd[gdi]); err2 == nil {
			s.mu.Lock()
			s.fallbacks++
			s.mu.Unlock()
			return t2, nil
		}
	}
	return nil, fmt.Errorf("vmdk: %s: grain table %d: %w", s.src.Name(), gdi, err)
}

// readTable reads and validates one grain table: every entry is 0 (unallocated), 1 (zeroed) or
// a sector between the metadata and the end of the file.
func (s *sparseExtent) readTable(ctx context.Context, sector uint32) ([]uint32, error) {
	b := make([]byte, s.gtBytes)
	off := int64(sector) * sectorSize
	vfs.Prioritize(s.src, off, s.gtBytes)
	if err := vfs.ReadFull(ctx, s.src, b, off); err != nil {
		return nil, err
	}
	return decodeTable(b, off, s.minGrain, uint64(s.fileSize/sectorSize))
}

// decodeTable decodes a grain table read at byte off and checks each entry against the grain
// area [minGrain, fileSectors).
func decodeTable(b []byte, off int64, minGrain, fileSectors uint64) ([]uint32, error) {
	t := make([]uint32, len(b)/4)
	for i := range t {
		e := binary.LittleEndian.Uint32(b[4*i:])
		if err := checkGTE(i, e, off, minGrain, fileSectors); err != nil {
			return nil, err
		}
		t[i] = e
	}
	return t, nil
}

// checkGTE checks entry i, e, of the grain table at byte off.
func checkGTE(i int, e uint32, off int64, minGrain, fileSectors uint64) error {
	switch {
	case e <= 1:
	case uint64(e) < minGrain:
		return fmt.Errorf("entry %d (byte %d) points at sector %d, inside the metadata (grains start at %d): %w",
			i, off+int64(4*i), e, minGrain, vfs.ErrCorrupt)
	case uint64(e) >= fileSectors:
		return fmt.Errorf("entry %d (byte %d) points at sector %d, past the end of the file (%d sectors): %w",
			i, off+int64(4*i), e, fileSectors, vfs.ErrTruncated)
	}
	return nil
}

// grain states returned by entry.
const (
	grainHole = iota
	grainZero
	grainData
	grainMissing // a truncated stream: the grain may exist but the file ends before it
)

// entry returns the state of grain g and, for grainData, the sector holding it (or its marker).
func (s *sparseExtent) entry(ctx context.Context, g uint64) (int, uint32, error) {
	n := uint64(s.h.numGTEsPerGT)
	t, err := s.view(ctx, uint32(g/n))
	if err != nil {
		return 0, 0, err
	}
	e := t.at(g, n)
	switch {
	case e == 0 && s.stream != nil && !s.stream.known(g):
		return grainMissing, 0, nil
	case e == 0:
		return grainHole, 0, nil
	case e == 1:
		// Zeroed grain (version 2+). Sector 1 can never hold a grain, so it is safe to honour
		// even when the header's flag is missing.
		return grainZero, 0, nil
	}
	return grainData, e, nil
}

func (s *sparseExtent) size() int64 { return s.capBytes }

func (s *sparseExtent) format() string {
	if s.h.compressed() {
		return "stream"
	}
	return "sparse"
}

func (s *sparseExtent) close() error {
	if s.file != nil {
		s.file.Close()
	}
	return s.src.Close()
}

// mapFile maps the allocated grains at off to the file, as far as they lie back to back in it
// (qemu and VMware append grains in write order, so sequential writes give long runs). It maps
// nothing unless the grain at off holds data.
func (s *sparseExtent) mapFile(ctx context.Context, off, length int64) (*os.File, int64, int64, error) {
	if s.file == nil || off < 0 || off >= s.capBytes {
		return nil, 0, 0, nil
	}
	end := min(off+length, s.capBytes)
	gb := s.h.grainBytes()
	var start, m int64
	for pos := off; pos < end; {
		g, within := uint64(pos/gb), pos%gb
		st, sec, err := s.entry(ctx, g)
		if err != nil {
			return nil, 0, 0, err
		}
		fo := int64(sec)*sectorSize + within
		if st != grainData || m > 0 && start+m != fo {
			break
		}
		if m == 0 {
			start = fo
		}
		c := min(end-pos, gb-within)
		if fo+c > s.fileSize {
			break // a grain cut short by the end of the file: let readAt report it
		}
		m += c
		pos += c
	}
	if m == 0 {
		return nil, 0, 0, nil
	}
	return s.file, start, m, nil
}

func (s *sparseExtent) extentNotes() []string {
	s.mu.Lock()
	n := s.fallbacks
	s.mu.Unlock()
	if n == 0 {
		return s.notes
	}
	return append(append([]string(nil), s.notes...), fmt.Sprintf("%d grain tables read from the redundant copy", n))
}

// mapRange reports the kind of each grain in [off, off+length). It walks one grain table at a
// time; unallocated tables are skipped whole. Grains missing from a truncated stream report
// Data (their reads fail with ErrTruncated).
func (s *sparseExtent) mapRange(ctx context.Context, off, length int64) ([]vfs.Extent, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	end := min(off+length, s.capBytes)
	gb := s.h.grainBytes()
	n := uint64(s.h.numGTEsPerGT)
	var out []vfs.Extent
	add := func(pos, c int64, k vfs.ExtentKind) {
		if l := len(out); l > 0 && out[l-1].Kind == k && out[l-1].End() == pos {
			out[l-1].Len += c
			return
		}
		out = append(out, vfs.Extent{Off: pos, Len: c, Kind: k})
	}
	steps, tables := 0, 0
	for pos := off; pos < end; {
		if len(out) > 4096 || steps >= maxMapSteps || tables >= maxMapTables {
			break // a prefix is enough; the caller loops
		}
		gdi := uint64(pos/gb) / n
		tableEnd := min(end, int64((gdi+1)*n)*gb)
		t, err := s.view(ctx, uint32(gdi))
		if err != nil {
			return nil, err
		}
		if !t.empty() {
			tables++
		}
		if t.empty() {
			if s.stream != nil && !s.stream.complete {
				if split := int64(s.stream.knownBelow) * gb; pos < split {
					c := min(tableEnd, split) - pos
					add(pos, c, vfs.Hole)
					pos += c
				}
				if pos < tableEnd {
					add(pos, tableEnd-pos, vfs.Data)
				}
			} else {
				add(pos, tableEnd-pos, vfs.Hole)
			}
			pos = tableEnd
			steps++
			continue
		}
		for pos < tableEnd {
			g := uint64(pos / gb)
			c := min(tableEnd, int64(g+1)*gb) - pos
			k := vfs.Data
			switch e := t.at(g, n); {
			case e == 0 && (s.stream == nil || s.stream.known(g)):
				k = vfs.Hole
			case e == 1:
				k = vfs.Zero
			}
			add(pos, c, k)
			pos += c
			steps++
		}
	}
	return out, nil
}

// readAt fills p from the extent at off. Contiguous grains are read with one source read.
func (s *sparseExtent) readAt(ctx context.Context, p []byte, off int64) error {
	if off < 0 || off+int64(len(p)) > s.capBytes {
		return fmt.Errorf("vmdk: %s: read of %d bytes at %d beyond extent size %d: %w", s.src.Name(), len(p), off, s.capBytes, vfs.ErrOutOfRange)
	}
	if s.h.compressed() {
		return s.readCompressed(ctx, p, off)
	}
	gb := s.h.grainBytes()
	var runFile int64 // file offset of the pending run
	var runP, runN int
	flush := func() error {
		if runN == 0 {
			return nil
		}
		err := vfs.ReadFull(ctx, s.src, p[runP:runP+runN], runFile)
		runN = 0
		if err != nil {
			return fmt.Errorf("vmdk: grain data: %w", err)
		}
		return nil
	}
	for pos := 0; pos < len(p); {
		abs := off + int64(pos)
		g, within := uint64(abs/gb), abs%gb
		c := int(min(int64(len(p)-pos), gb-within))
		st, sec, err := s.entry(ctx, g)
		if err != nil {
			return err
		}
		if st == grainData {
			fo := int64(sec)*sectorSize + within
			if runN > 0 && runFile+int64(runN) == fo {
				runN += c
			} else {
				if err := flush(); err != nil {
					return err
				}
				runFile, runP, runN = fo, pos, c
			}
		} else {
			if err := flush(); err != nil {
				return err
			}
			clear(p[pos : pos+c])
		}
		pos += c
	}
	return flush()
}

// allocated counts the grains present. For a compressed extent it is the size of the grain area
// of the file (reading every marker to add up compressed sizes would cost a read per grain).
// The count is made once, through one table buffer (the grain table cache is left to readers),
// reading each table once: tables are never shared (readDirectory refuses that), so the walk
// reads at most the file.
func (s *sparseExtent) allocated(ctx context.Context) (int64, error) {
	if s.h.compressed() {
		return max(0, s.fileSize-int64(s.h.overHead)*sectorSize), nil
	}
	return s.alloc.get(ctx, s.countAllocated)
}

func (s *sparseExtent) countAllocated(ctx context.Context) (int64, error) {
	buf := make([]byte, s.gtBytes)
	n := uint64(s.h.numGTEsPerGT)
	grains := (s.capSectors + s.h.grainSize - 1) / s.h.grainSize
	var count int64
	for gdi, sec := range s.gd {
		if sec == 0 {
			continue
		}
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		valid := min(n, grains-uint64(gdi)*n) // entries of this table inside the capacity
		c, err := s.countTable(ctx, buf, sec, int(valid))
		if err != nil && s.rgd != nil && s.rgd[gdi] != 0 {
			c, err = s.countTable(ctx, buf, s.rgd[gdi], int(valid))
		}
		if err != nil {
			return 0, fmt.Errorf("vmdk: %s: grain table %d: %w", s.src.Name(), gdi, err)
		}
		count += c
	}
	return count * s.h.grainBytes(), nil
}

// countTable reads the grain table at sector into buf, checks it like readTable and counts the
// allocated grains among its first valid entries.
func (s *sparseExtent) countTable(ctx context.Context, buf []byte, sector uint32, valid int) (int64, error) {
	off := int64(sector) * sectorSize
	if err := vfs.ReadFull(ctx, s.src, buf, off); err != nil {
		return 0, err
	}
	fileSectors := uint64(s.fileSize / sectorSize)
	var c int64
	for i := range len(buf) / 4 {
		e := binary.LittleEndian.Uint32(buf[4*i:])
		if err := checkGTE(i, e, off, s.minGrain, fileSectors); err != nil {
			return 0, err
		}
		if e > 1 && i < valid {
			c++
		}
	}
	return c, nil
}
