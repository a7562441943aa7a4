package vmdk

// This file holds the ESX sparse ("COWD", vmfsSparse) extent reader and the grain-map engine it
// shares with the seSparse reader (sesparse.go): both formats are a directory of grain tables
// held in memory plus grain tables read on demand, cached and bounded.
//
// Locking: esxTableCache.mu is the only mutex; no I/O happens while it is held.

import (
	"container/list"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/h2kvm/h2kvm/vfs"
)

const (
	esxSector = 512

	esxCOWDMagic      = "COWD"
	esxCOWDHeaderSize = 2048 // 4 sectors; only the first 32 bytes matter for reading
	esxCOWDGTEntries  = 4096 // u32 entries per grain table (16 KiB)
	// esxMaxGrainSectors is qemu's sanity cap on grain sizes (1 GiB grains are unrealistic).
	esxMaxGrainSectors = 0x200000
	// esxMaxDirEntries is qemu's cap on grain directory length.
	esxMaxDirEntries = 32 << 20

	// esxTableCacheSize bounds the grain tables kept decoded in memory per extent
	// (64 × 4096 × 8 bytes = 2 MiB at most).
	esxTableCacheSize = 64
	// esxMapTableBudget bounds the grain tables one mapRange call loads before it returns a prefix.
	esxMapTableBudget = 16
)

// esxGrainLoc is where one grain of a sparse extent reads from.
type esxGrainLoc struct {
	kind vfs.ExtentKind
	off  int64 // byte offset of the grain in the file; Data only
}

// esxFormat is what one sparse format tells the shared engine.
type esxFormat interface {
	// tableOffset returns the byte offset in the file of grain table gdi, or 0 when the
	// directory marks the table unallocated (every grain it covers is a Hole).
	tableOffset(gdi int64) (int64, error)
	// decode interprets the table entry of guest grain g.
	decode(entry uint64, g int64) (esxGrainLoc, error)
}

// esxGrainMap implements extentReader for a two-level sparse format.
type esxGrainMap struct {
	// set once
	src       vfs.Source
	kind      string // format() name
	capacity  int64  // bytes
	grainSize int64  // bytes
	perTable  int64  // entries per grain table
	entrySize int64  // bytes per table entry: 4 or 8
	numTables int64  // directory entries that cover capacity
	f         esxFormat
	cache     *esxTableCache // keyed by the table's file offset: directory entries may share one
	alloc     allocCache
}

var _ extentReader = (*esxGrainMap)(nil)

func (m *esxGrainMap) size() int64    { return m.capacity }
func (m *esxGrainMap) format() string { return m.kind }
func (m *esxGrainMap) close() error   { return m.src.Close() }

// grainNeed returns how many bytes of grain g lie inside the capacity (the last grain may be
// short), i.e. how much of it must exist in the file.
func (m *esxGrainMap) grainNeed(g int64) int64 {
	start := g * m.grainSize
	return min(m.grainSize, m.capacity-start)
}

// checkGrain validates that a Data grain of guest grain g at file byte off lies in the file.
func (m *esxGrainMap) checkGrain(off, g int64) error {
	need := m.grainNeed(g)
	if off < 0 || off > m.src.Size() || need > m.src.Size()-off {
		return fmt.Errorf("vmdk: %s: grain %d at file offset %d (+%d bytes) lies past the end of the file (%d bytes): %w",
			m.src.Name(), g, off, need, m.src.Size(), vfs.ErrTruncated)
	}
	return nil
}

// table returns the entries of grain table gdi, or nil when it is unallocated.
func (m *esxGrainMap) table(ctx context.Context, gdi int64) ([]uint64, error) {
	off, err := m.f.tableOffset(gdi)
	if err != nil || off == 0 {
		return nil, err
	}
	return m.cache.get(ctx, off, func(ctx context.Context) ([]uint64, error) {
		return m.loadTable(ctx, gdi, off)
	})
}

func (m *esxGrainMap) loadTable(ctx context.Context, gdi, off int64) ([]uint64, error) {
	buf := make([]byte, m.perTable*m.entrySize)
	if err := m.readTable(ctx, buf, gdi, off); err != nil {
		return nil, err
	}
	t := make([]uint64, m.perTable)
	for i := range t {
		if m.entrySize == 4 {
			t[i] = uint64(binary.LittleEndian.Uint32(buf[i*4:]))
		} else {
			t[i] = binary.LittleEndian.Uint64(buf[i*8:])
		}
	}
	return t, nil
}

// readTable reads the raw grain table gdi at byte off into buf.
func (m *esxGrainMap) readTable(ctx context.Context, buf []byte, gdi, off int64) error {
	n := int64(len(buf))
	if off < 0 || off > m.src.Size() || n > m.src.Size()-off {
		return fmt.Errorf("vmdk: %s: grain table %d at file offset %d (+%d bytes) lies past the end of the file (%d bytes): %w",
			m.src.Name(), gdi, off, n, m.src.Size(), vfs.ErrTruncated)
	}
	if err := vfs.ReadFull(ctx, m.src, buf, off); err != nil {
		return esxWrapIO(err, "vmdk: grain table %d", gdi)
	}
	return nil
}

func (m *esxGrainMap) tableEntry(buf []byte, i int64) uint64 {
	if m.entrySize == 4 {
		return uint64(binary.LittleEndian.Uint32(buf[i*4:]))
	}
	return binary.LittleEndian.Uint64(buf[i*8:])
}

// locate returns where grain g reads from and how many following grains (including g) share
// the same unallocated table, so callers can skip whole holes at once.
func (m *esxGrainMap) locate(ctx context.Context, g int64) (loc esxGrainLoc, run int64, err error) {
	gdi := g / m.perTable
	t, err := m.table(ctx, gdi)
	if err != nil {
		return esxGrainLoc{}, 0, err
	}
	if t == nil {
		return esxGrainLoc{kind: vfs.Hole}, (gdi+1)*m.perTable - g, nil
	}
	loc, err = m.f.decode(t[g%m.perTable], g)
	if err != nil {
		return esxGrainLoc{}, 0, err
	}
	if loc.kind == vfs.Data {
		if err := m.checkGrain(loc.off, g); err != nil {
			return esxGrainLoc{}, 0, err
		}
	}
	return loc, 1, nil
}

func (m *esxGrainMap) checkRange(off, n int64) error {
	if off < 0 || n < 0 || off > m.capacity || n > m.capacity-off {
		return fmt.Errorf("vmdk: %s: %d bytes at %d outside extent of %d bytes: %w",
			m.src.Name(), n, off, m.capacity, vfs.ErrOutOfRange)
	}
	return nil
}

// readAt reads grains, merging runs of grains that are contiguous in the file into one read.
func (m *esxGrainMap) readAt(ctx context.Context, p []byte, off int64) error {
	if err := m.checkRange(off, int64(len(p))); err != nil {
		return err
	}
	end := off + int64(len(p))
	// pending run of file bytes to read into p[runDst:runDst+runLen] from runSrc
	var runDst, runSrc, runLen int64
	flush := func() error {
		if runLen == 0 {
			return nil
		}
		err := vfs.ReadFull(ctx, m.src, p[runDst:runDst+runLen], runSrc)
		runLen = 0
		if err != nil {
			return esxWrapIO(err, "vmdk: reading grains")
		}
		return nil
	}
	for pos := off; pos < end; {
		if err := ctx.Err(); err != nil {
			return err
		}
		g := pos / m.grainSize
		loc, run, err := m.locate(ctx, g)
		if err != nil {
			return err
		}
		n := min((g+run)*m.grainSize, end) - pos
		dst := pos - off
		if loc.kind == vfs.Data {
			fileOff := loc.off + pos - g*m.grainSize
			if runLen > 0 && runSrc+runLen == fileOff && runDst+runLen == dst {
				runLen += n
			} else {
				if err := flush(); err != nil {
					return err
				}
				runDst, runSrc, runLen = dst, fileOff, n
			}
		} else {
			if err := flush(); err != nil {
				return err
			}
			clear(p[dst : dst+n])
		}
		pos += n
	}
	return flush()
}

// mapRange reports grain kinds, merging neighbours of equal kind. It returns a prefix once it
// has looked at esxMapTableBudget grain tables; each table is fetched once, not once per grain.
func (m *esxGrainMap) mapRange(ctx context.Context, off, length int64) ([]vfs.Extent, error) {
	if off < 0 || off > m.capacity {
		return nil, m.checkRange(off, 0)
	}
	end := min(off+max(length, 0), m.capacity)
	var out []vfs.Extent
	add := func(pos, n int64, k vfs.ExtentKind) {
		if i := len(out) - 1; i >= 0 && out[i].Kind == k {
			out[i].Len += n
		} else {
			out = append(out, vfs.Extent{Off: pos, Len: n, Kind: k})
		}
	}
	for budget := esxMapTableBudget; off < end; budget-- {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if budget == 0 && len(out) > 0 {
			break
		}
		gdi := off / m.grainSize / m.perTable
		tableEnd := min((gdi+1)*m.perTable*m.grainSize, end)
		t, err := m.table(ctx, gdi)
		if err != nil {
			return nil, err
		}
		if t == nil {
			add(off, tableEnd-off, vfs.Hole)
			off = tableEnd
			continue
		}
		for off < tableEnd {
			g := off / m.grainSize
			loc, err := m.f.decode(t[g%m.perTable], g)
			if err != nil {
				return nil, err
			}
			if loc.kind == vfs.Data {
				if err := m.checkGrain(loc.off, g); err != nil {
					return nil, err
				}
			}
			n := min((g+1)*m.grainSize, tableEnd) - off
			add(off, n, loc.kind)
			off += n
		}
	}
	return out, nil
}

// allocated counts the bytes of the Data grains of the allocated grain tables, each distinct
// table once: directory entries that share a table share its grains, so counting the table
// again would count file bytes twice (and a directory of 1 Mi entries naming one table would
// cost 1 Mi table reads). The count is made once per extent, through one table buffer,
// bypassing the cache; it reads at most the file (checkTableCount).
func (m *esxGrainMap) allocated(ctx context.Context) (int64, error) {
	return m.alloc.get(ctx, m.countAllocated)
}

func (m *esxGrainMap) countAllocated(ctx context.Context) (int64, error) {
	tableBytes := m.perTable * m.entrySize
	first := map[int64]int64{} // table offset → first directory entry naming it
	var order []int64          // distinct table offsets, in directory order
	for gdi := range m.numTables {
		off, err := m.f.tableOffset(gdi)
		if err != nil {
			return 0, err
		}
		if off == 0 {
			continue
		}
		if _, ok := first[off]; !ok {
			first[off] = gdi
			order = append(order, off)
			// Checked as the set grows, so that the set stays as small as the file.
			if err := checkTableCount(m.src.Name(), m.kind+" grain directory", int64(len(order)), tableBytes, m.src.Size()); err != nil {
				return 0, err
			}
		}
	}
	buf := make([]byte, tableBytes)
	var total int64
	for _, off := range order {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		gdi := first[off]
		if err := m.readTable(ctx, buf, gdi, off); err != nil {
			return 0, err
		}
		for i := range m.perTable {
			g := gdi*m.perTable + i
			if g*m.grainSize >= m.capacity {
				break
			}
			loc, err := m.f.decode(m.tableEntry(buf, i), g)
			if err != nil {
				return 0, err
			}
			if loc.kind == vfs.Data {
				total += m.grainNeed(g)
			}
		}
	}
	return total, nil
}

// esxWrapIO prefixes an I/O error, except a context's own error, which passes through unwrapped.
func esxWrapIO(err error, format string, args ...any) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), err)
}

// esxTableCache keeps decoded grain tables, least recently used out first. Concurrent misses on
// the same table share one load.
type esxTableCache struct {
	max int

	mu      sync.Mutex
	entries map[int64]*esxTableEntry // guarded by mu
	lru     *list.List               // guarded by mu; of int64 table index, front = newest
}

type esxTableEntry struct {
	ready chan struct{} // closed when t/err are set
	t     []uint64
	err   error
	elem  *list.Element // guarded by esxTableCache.mu; nil while loading
}

func newESXTableCache(max int) *esxTableCache {
	return &esxTableCache{max: max, entries: map[int64]*esxTableEntry{}, lru: list.New()}
}

func (c *esxTableCache) get(ctx context.Context, key int64, load func(context.Context) ([]uint64, error)) ([]uint64, error) {
	for {
		c.mu.Lock()
		e, ok := c.entries[key]
		if ok && e.elem != nil {
			c.lru.MoveToFront(e.elem)
			c.mu.Unlock()
			return e.t, nil
		}
		if !ok {
			e = &esxTableEntry{ready: make(chan struct{})}
			c.entries[key] = e
			c.mu.Unlock()
			e.t, e.err = load(ctx)
			c.mu.Lock()
			if e.err != nil {
				delete(c.entries, key)
			} else {
				e.elem = c.lru.PushFront(key)
				for c.lru.Len() > c.max {
					old := c.lru.Remove(c.lru.Back()).(int64)
					delete(c.entries, old)
				}
			}
			c.mu.Unlock()
			close(e.ready)
			return e.t, e.err
		}
		c.mu.Unlock()
		select {
		case <-e.ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if e.err == nil {
			return e.t, nil
		}
		// The loader failed; if it was only its own context that ended, try again with ours.
		if !errors.Is(e.err, context.Canceled) && !errors.Is(e.err, context.DeadlineExceeded) {
			return nil, e.err
		}
	}
}

// esxCOWDHeader is the part of a COWD header that matters for reading (offsets 0..31).
type esxCOWDHeader struct {
	version      uint32
	flags        uint32
	numSectors   uint32 // capacity in sectors
	grainSize    uint32 // sectors
	gdOffset     uint32 // sectors
	numGDEntries uint32
	freeSector   uint32
}

// parseESXCOWDHeader decodes and checks a COWD header against the size of its file.
func parseESXCOWDHeader(b []byte, fileSize int64, name string) (esxCOWDHeader, error) {
	bad := func(format string, args ...any) (esxCOWDHeader, error) {
		return esxCOWDHeader{}, fmt.Errorf("vmdk: %s: COWD header: %s: %w", name, fmt.Sprintf(format, args...), vfs.ErrCorrupt)
	}
	if len(b) < 32 || string(b[:4]) != esxCOWDMagic {
		return bad("magic at offset 0 is %q, want %q", b[:min(4, len(b))], esxCOWDMagic)
	}
	le := binary.LittleEndian
	h := esxCOWDHeader{
		version:      le.Uint32(b[4:]),
		flags:        le.Uint32(b[8:]),
		numSectors:   le.Uint32(b[12:]),
		grainSize:    le.Uint32(b[16:]),
		gdOffset:     le.Uint32(b[20:]),
		numGDEntries: le.Uint32(b[24:]),
		freeSector:   le.Uint32(b[28:]),
	}
	if h.version != 1 {
		return esxCOWDHeader{}, fmt.Errorf("vmdk: %s: COWD header: version %d at offset 4, only 1 is known: %w", name, h.version, vfs.ErrUnsupported)
	}
	if h.numSectors == 0 {
		return bad("capacity (offset 12) is 0")
	}
	if h.grainSize == 0 || h.grainSize > esxMaxGrainSectors {
		return bad("grain size (offset 16) is %d sectors, want 1..%d", h.grainSize, esxMaxGrainSectors)
	}
	if h.gdOffset < esxCOWDHeaderSize/esxSector {
		return bad("grain directory offset (offset 20) is sector %d, inside the %d-byte header", h.gdOffset, esxCOWDHeaderSize)
	}
	need := (int64(h.numSectors) + esxCOWDGTEntries*int64(h.grainSize) - 1) / (esxCOWDGTEntries * int64(h.grainSize))
	if int64(h.numGDEntries) < need || h.numGDEntries > esxMaxDirEntries {
		return bad("grain directory has %d entries (offset 24), capacity %d sectors needs %d", h.numGDEntries, h.numSectors, need)
	}
	if end := (int64(h.gdOffset) + (int64(h.numGDEntries)*4+esxSector-1)/esxSector) * esxSector; end > fileSize {
		return esxCOWDHeader{}, fmt.Errorf("vmdk: %s: COWD grain directory at sector %d (%d entries) ends at byte %d, past the end of the file (%d bytes): %w",
			name, h.gdOffset, h.numGDEntries, end, fileSize, vfs.ErrTruncated)
	}
	return h, nil
}

// esxCOWD is the esxFormat of a COWD extent.
type esxCOWD struct {
	name      string
	dir       []uint32 // grain directory: sector of each grain table, 0 = none
	fileSize  int64
	grainSize int64 // bytes
}

func (c *esxCOWD) tableOffset(gdi int64) (int64, error) {
	s := c.dir[gdi]
	if s == 0 {
		return 0, nil
	}
	if s < esxCOWDHeaderSize/esxSector {
		return 0, fmt.Errorf("vmdk: %s: COWD grain directory entry %d points at sector %d, inside the header: %w", c.name, gdi, s, vfs.ErrCorrupt)
	}
	return int64(s) * esxSector, nil
}

func (c *esxCOWD) decode(e uint64, g int64) (esxGrainLoc, error) {
	if e == 0 {
		return esxGrainLoc{kind: vfs.Hole}, nil
	}
	// COWD has no zeroed-grain marker: qemu reads entry 1 as a grain at sector 1, which is
	// inside the header, so any entry below the header's end is corrupt.
	if e < esxCOWDHeaderSize/esxSector {
		return esxGrainLoc{}, fmt.Errorf("vmdk: %s: COWD grain table entry of grain %d points at sector %d, inside the header: %w", c.name, g, e, vfs.ErrCorrupt)
	}
	return esxGrainLoc{kind: vfs.Data, off: int64(e) * esxSector}, nil
}

// openCOWD opens a COWD file as a whole extent with a budget of its own.
func openCOWD(ctx context.Context, src vfs.Source) (extentReader, error) {
	return openCOWDExtent(ctx, src, -1, newMetaBudget(0))
}

// openCOWDExtent opens an ESX sparse ("COWD", vmfsSparse) extent of need bytes (-1: the
// header's capacity), reading the directory entries that cover them (the header may declare
// more) and charging them to b. The extent owns src from then on (close closes it); on error
// the caller still owns src.
func openCOWDExtent(ctx context.Context, src vfs.Source, need int64, b *metaBudget) (extentReader, error) {
	hb := make([]byte, 32)
	if err := vfs.ReadFull(ctx, src, hb, 0); err != nil {
		return nil, esxWrapIO(err, "vmdk: COWD header")
	}
	h, err := parseESXCOWDHeader(hb, src.Size(), src.Name())
	if err != nil {
		return nil, err
	}
	capacity := int64(h.numSectors) * esxSector
	if need >= 0 {
		if capacity < need {
			return nil, fmt.Errorf("vmdk: %s: COWD header capacity is %d sectors (offset 12) but the descriptor's extent line needs %d: %w",
				src.Name(), h.numSectors, need/esxSector, vfs.ErrCorrupt)
		}
		capacity = need
	}
	grainSize := int64(h.grainSize) * esxSector
	n := (capacity + esxCOWDGTEntries*grainSize - 1) / (esxCOWDGTEntries * grainSize)
	if err := b.charge("COWD grain directory", n*4); err != nil {
		return nil, fmt.Errorf("vmdk: %s: %w", src.Name(), err)
	}
	c := &esxCOWD{name: src.Name(), dir: make([]uint32, n), fileSize: src.Size(), grainSize: grainSize}
	err = readEntries(ctx, src, int64(h.gdOffset)*esxSector, n, 4, func(i int64, e uint64) { c.dir[i] = uint32(e) })
	if err != nil {
		return nil, esxWrapIO(err, "vmdk: COWD grain directory")
	}
	return &esxGrainMap{
		src:       src,
		kind:      "cowd",
		capacity:  capacity,
		grainSize: grainSize,
		perTable:  esxCOWDGTEntries,
		entrySize: 4,
		numTables: n,
		f:         c,
		cache:     newESXTableCache(esxTableCacheSize),
	}, nil
}
