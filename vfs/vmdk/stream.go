package vmdk

import (
	"bytes"
	"cmp"
	"compress/zlib"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/h2kvm/h2kvm/vfs"
)

// streamMap is the grain map of a streamOptimized extent rebuilt by scanning its markers, used
// when the footer (and so the grain directory) is missing. When the scan stops before an
// end-of-stream marker, grains it did not see are either absent (zero) or lost with the end of
// the file; VMware writes grains in ascending order, so when the markers seen were ascending,
// grains below the last one seen are known to be absent.
//
// The map is a sorted list of the grains found, not a table per grain directory entry: a few
// markers scattered over the capacity would otherwise cost a whole table each (see gtView).
type streamMap struct {
	found      []streamGrain // sorted by grain, one per grain (the last marker seen wins)
	complete   bool          // an end-of-stream marker was reached
	knownBelow uint64        // grains below this index are known (present or absent)
	endedAt    int64         // byte offset where the scan stopped
	grains     int           // grain markers found
	grainBytes int64
}

// streamGrain is a grain found by scanStream: its index and the sector of its marker.
type streamGrain struct {
	g   uint64
	sec uint32
}

// streamGrainBytes is what one found grain costs in memory, charged to the metadata budget.
const streamGrainBytes = 16

func (m *streamMap) known(g uint64) bool { return m.complete || g < m.knownBelow }

func (m *streamMap) describe() string {
	if m.complete {
		return fmt.Sprintf("stream footer missing: grain map rebuilt from %d grain markers", m.grains)
	}
	return fmt.Sprintf("stream truncated at byte %d (no footer, no end-of-stream marker): %d grains found; unallocated grains from guest byte %d on cannot be read",
		m.endedAt, m.grains, int64(m.knownBelow)*m.grainBytes)
}

// gtView is one grain table: read from the file (t), or the grains a stream scan found in its
// range (found); both nil when the table is not allocated.
type gtView struct {
	t     []uint32
	found []streamGrain
}

func (v gtView) empty() bool { return v.t == nil && v.found == nil }

// at returns the entry of grain g (n entries per table).
func (v gtView) at(g, n uint64) uint32 {
	if v.t != nil {
		return v.t[g%n]
	}
	if i, ok := slices.BinarySearchFunc(v.found, g, cmpGrain); ok {
		return v.found[i].sec
	}
	return 0
}

func cmpGrain(e streamGrain, g uint64) int { return cmp.Compare(e.g, g) }

// view returns grain table gdi. A stream whose map was rebuilt from its markers has no tables:
// its view is the slice of the grains found in the table's range, so a table costs nothing.
func (s *sparseExtent) view(ctx context.Context, gdi uint32) (gtView, error) {
	if s.stream == nil {
		t, err := s.table(ctx, gdi)
		return gtView{t: t}, err
	}
	n := uint64(s.h.numGTEsPerGT)
	f := s.stream.found
	i, _ := slices.BinarySearchFunc(f, uint64(gdi)*n, cmpGrain)
	j, _ := slices.BinarySearchFunc(f, uint64(gdi+1)*n, cmpGrain)
	if i == j {
		return gtView{}, nil
	}
	return gtView{found: f[i:j]}, nil
}

// scanStream walks the markers of a stream from its first grain and builds the grain map of its
// first capSectors sectors (grains past them are skipped), charging it to mb as it grows. It
// reads the file sequentially in large chunks.
func scanStream(ctx context.Context, src vfs.Source, h *sparseHeader, capSectors uint64, mb *metaBudget) (*streamMap, error) {
	m := &streamMap{grainBytes: h.grainBytes()}
	size := src.Size()
	maxGrains := (h.capacity + h.grainSize - 1) / h.grainSize
	maxPayload := int64(h.grainBytes()) + int64(h.grainBytes())/8 + 1024
	r := &chunkReader{ctx: ctx, src: src}
	ascending, last := true, int64(-1)
	pos := int64(max(h.overHead, 1)) * sectorSize
	for {
		if pos+sectorSize > size {
			break
		}
		b, err := r.at(pos, sectorSize)
		if err != nil {
			return nil, err
		}
		mk, err := parseMarker(b)
		if err != nil {
			return nil, fmt.Errorf("byte %d: %w", pos, err)
		}
		if mk.size == 0 {
			if mk.typ == markerEOS {
				m.complete = true
				break
			}
			if mk.val > uint64(size/sectorSize) {
				return nil, fmt.Errorf("byte %d: metadata marker of %d sectors: %w", pos, mk.val, vfs.ErrCorrupt)
			}
			pos += sectorSize + int64(mk.val)*sectorSize
			continue
		}
		if mk.val%h.grainSize != 0 || mk.val >= h.capacity || int64(mk.size) > maxPayload {
			return nil, fmt.Errorf("byte %d: grain marker for sector %d with %d bytes (grain %d sectors, capacity %d): %w",
				pos, mk.val, mk.size, h.grainSize, h.capacity, vfs.ErrCorrupt)
		}
		g := mk.val / h.grainSize
		end := pos + (12+int64(mk.size)+sectorSize-1)/sectorSize*sectorSize
		if pos+12+int64(mk.size) > size {
			m.knownBelow = g // this grain exists but is cut off
			if !ascending {
				m.knownBelow = 0
			}
			break
		}
		if int64(g) <= last {
			ascending = false
		}
		last = int64(g)
		if pos/sectorSize > int64(^uint32(0)) {
			return nil, fmt.Errorf("byte %d: grain beyond 2 TiB of file: %w", pos, vfs.ErrCorrupt)
		}
		if mk.val < capSectors {
			if len(m.found)%4096 == 0 {
				if err := mb.charge("grain map rebuilt from the stream's markers", 4096*streamGrainBytes); err != nil {
					return nil, fmt.Errorf("byte %d: %w", pos, err)
				}
			}
			m.found = append(m.found, streamGrain{g: g, sec: uint32(pos / sectorSize)})
		}
		m.grains++
		if uint64(m.grains) > maxGrains {
			return nil, fmt.Errorf("byte %d: more grain markers than the capacity holds: %w", pos, vfs.ErrCorrupt)
		}
		m.knownBelow = g + 1
		pos = end
	}
	m.endedAt = pos
	if !m.complete && !ascending {
		m.knownBelow = 0
	}
	// One entry per grain, the last marker seen winning, as when it was written over.
	slices.SortStableFunc(m.found, func(a, b streamGrain) int { return cmp.Compare(a.g, b.g) })
	k := 0
	for i, e := range m.found {
		if i+1 < len(m.found) && m.found[i+1].g == e.g {
			continue
		}
		m.found[k] = e
		k++
	}
	m.found = slices.Clip(m.found[:k])
	return m, nil
}

// chunkReader reads a source sequentially through a 1 MiB window.
type chunkReader struct {
	ctx  context.Context
	src  vfs.Source
	buf  []byte
	base int64
}

func (r *chunkReader) at(off int64, n int) ([]byte, error) {
	if off >= r.base && off+int64(n) <= r.base+int64(len(r.buf)) {
		return r.buf[off-r.base : off-r.base+int64(n)], nil
	}
	want := max(1<<20, n)
	if cap(r.buf) < want {
		r.buf = make([]byte, want)
	}
	r.buf = r.buf[:want]
	got, err := r.src.ReadAt(r.ctx, r.buf, off)
	if got < n {
		if err == nil || err == io.EOF {
			return nil, fmt.Errorf("%s: %d bytes at %d: %w", r.src.Name(), n, off, vfs.ErrTruncated)
		}
		return nil, err
	}
	r.buf, r.base = r.buf[:got], off
	return r.buf[:n], nil
}

// pendingGrain is a compressed grain to fetch for one read.
type pendingGrain struct {
	g      uint64
	sec    uint32
	pos    int   // where in p the copy goes
	within int64 // offset inside the grain
	n      int   // bytes to copy
}

// readCompressed fills p from a compressed extent. Grains the read needs that are neighbours in
// the file are fetched with one source read; whole grains inflate straight into p, partial ones
// go through the inflated-grain cache.
func (s *sparseExtent) readCompressed(ctx context.Context, p []byte, off int64) error {
	gb := s.h.grainBytes()
	var pend []pendingGrain
	for pos := 0; pos < len(p); {
		abs := off + int64(pos)
		g, within := uint64(abs/gb), abs%gb
		c := int(min(int64(len(p)-pos), gb-within))
		st, sec, err := s.entry(ctx, g)
		if err != nil {
			return err
		}
		switch st {
		case grainHole, grainZero:
			clear(p[pos : pos+c])
		case grainMissing:
			return fmt.Errorf("vmdk: %s: grain %d (guest byte %d) lies past the end of the truncated stream (%d bytes): %w",
				s.src.Name(), g, int64(g)*gb, s.fileSize, vfs.ErrTruncated)
		default:
			if buf, ok := s.grains.get(g); ok {
				copy(p[pos:pos+c], buf[within:])
			} else {
				pend = append(pend, pendingGrain{g: g, sec: sec, pos: pos, within: within, n: c})
			}
		}
		pos += c
	}
	// Group grains whose markers follow each other closely in the file.
	gapMax := uint32(2*s.h.grainSize + 4)
	for i := 0; i < len(pend); {
		j := i + 1
		for j < len(pend) && pend[j].sec > pend[j-1].sec && pend[j].sec-pend[j-1].sec <= gapMax {
			j++
		}
		if err := s.fetchGrains(ctx, p, pend[i:j]); err != nil {
			return err
		}
		i = j
	}
	return nil
}

// fetchGrains reads the markers of grains (ascending in the file) with one source read and
// inflates them.
func (s *sparseExtent) fetchGrains(ctx context.Context, p []byte, grains []pendingGrain) error {
	gb := s.h.grainBytes()
	start := int64(grains[0].sec) * sectorSize
	end := min(int64(grains[len(grains)-1].sec)*sectorSize+12+gb+gb/16+sectorSize, s.fileSize)
	buf := make([]byte, end-start)
	if err := vfs.ReadFull(ctx, s.src, buf, start); err != nil {
		return fmt.Errorf("vmdk: grain %d: %w", grains[0].g, err)
	}
	payloads := make([][]byte, len(grains))
	for i, pg := range grains {
		var err error
		if payloads[i], err = s.grainPayload(ctx, buf, int64(pg.sec)*sectorSize-start, pg); err != nil {
			return err
		}
	}
	// Inflating is the cost of a stream read: spread the grains over the CPUs.
	var g errgroup.Group
	g.SetLimit(runtime.GOMAXPROCS(0))
	for i, pg := range grains {
		g.Go(func() error { return s.inflateInto(p, pg, payloads[i]) })
	}
	return g.Wait()
}

// inflateInto inflates one grain into its place in p, through the grain cache when the read
// wants only part of it.
func (s *sparseExtent) inflateInto(p []byte, pg pendingGrain, payload []byte) error {
	gb := s.h.grainBytes()
	glen := min(gb, s.capBytes-int64(pg.g)*gb)
	if pg.within == 0 && int64(pg.n) == glen {
		if err := inflate(p[pg.pos:pg.pos+pg.n], payload); err != nil {
			return s.grainErr(pg, err)
		}
		return nil
	}
	full := make([]byte, glen)
	if err := inflate(full, payload); err != nil {
		return s.grainErr(pg, err)
	}
	s.grains.put(pg.g, full)
	copy(p[pg.pos:pg.pos+pg.n], full[pg.within:])
	return nil
}

func (s *sparseExtent) grainErr(pg pendingGrain, err error) error {
	return fmt.Errorf("vmdk: %s: grain %d (marker at byte %d): %w", s.src.Name(), pg.g, int64(pg.sec)*sectorSize, err)
}

// grainPayload returns the compressed bytes of the grain whose marker is at buf[o:], reading
// past buf when the grain compressed to more than expected.
func (s *sparseExtent) grainPayload(ctx context.Context, buf []byte, o int64, pg pendingGrain) ([]byte, error) {
	if o+12 > int64(len(buf)) {
		return nil, s.grainErr(pg, fmt.Errorf("marker past the end of the file: %w", vfs.ErrTruncated))
	}
	lba := binary.LittleEndian.Uint64(buf[o:])
	n := int64(binary.LittleEndian.Uint32(buf[o+8:]))
	gb := s.h.grainBytes()
	if lba != pg.g*s.h.grainSize || n == 0 || n > gb+gb/8+1024 {
		return nil, s.grainErr(pg, fmt.Errorf("marker says sector %d, %d bytes; want sector %d: %w", lba, n, pg.g*s.h.grainSize, vfs.ErrCorrupt))
	}
	if o+12+n <= int64(len(buf)) {
		return buf[o+12 : o+12+n], nil
	}
	b := make([]byte, n)
	if err := vfs.ReadFull(ctx, s.src, b, int64(pg.sec)*sectorSize+12); err != nil {
		return nil, s.grainErr(pg, err)
	}
	return b, nil
}

var zlibReaders sync.Pool // of io.ReadCloser implementing zlib.Resetter

// inflate decompresses one zlib stream into exactly dst and checks its checksum. The stream may
// hold more than dst (a full grain past the end of the capacity); the excess is discarded.
func inflate(dst, src []byte) error {
	br := bytes.NewReader(src)
	var zr io.ReadCloser
	if v := zlibReaders.Get(); v != nil {
		zr = v.(io.ReadCloser)
		if err := zr.(zlib.Resetter).Reset(br, nil); err != nil {
			return fmt.Errorf("zlib header: %v: %w", err, vfs.ErrCorrupt)
		}
	} else {
		var err error
		if zr, err = zlib.NewReader(br); err != nil {
			return fmt.Errorf("zlib header: %v: %w", err, vfs.ErrCorrupt)
		}
	}
	_, err := io.ReadFull(zr, dst)
	if err == nil {
		// Drain to the end so the Adler-32 checksum is verified.
		_, err = io.Copy(io.Discard, io.LimitReader(zr, 1<<22))
	}
	if err == nil || !errors.Is(err, io.ErrUnexpectedEOF) {
		zlibReaders.Put(zr)
	}
	if err != nil {
		return fmt.Errorf("inflating: %v: %w", err, vfs.ErrCorrupt)
	}
	return nil
}
