package vmdk

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/h2kvm/h2kvm/vfs"
)

// memOpener serves files from memory, for fuzzing without touching the disk.
type memOpener map[string][]byte

func (m memOpener) Open(ctx context.Context, name string) (vfs.Source, error) {
	b, ok := m[name]
	if !ok {
		return nil, fmt.Errorf("open %s: %w", name, vfs.ErrNotFound)
	}
	return &memSource{r: bytes.NewReader(b), name: name}, nil
}

func (m memOpener) Resolve(base, rel string) (string, error) {
	p := path.Join(path.Dir(base), rel)
	if strings.HasPrefix(p, "..") || path.IsAbs(rel) {
		return "", fmt.Errorf("%q leaves the root: %w", rel, vfs.ErrChain)
	}
	return p, nil
}

type memSource struct {
	r    *bytes.Reader
	name string
}

func (s *memSource) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	return s.r.ReadAt(p, off)
}
func (s *memSource) Size() int64  { return s.r.Size() }
func (s *memSource) Name() string { return s.name }
func (s *memSource) Close() error { return nil }

func FuzzParseDescriptor(f *testing.F) {
	f.Add([]byte(sampleDescriptor))
	f.Add([]byte("version=1\nCID=1\nparentCID=ffffffff\nRW 10 SPARSE \"a b.vmdk\"\nRW 5 ZERO\n"))
	f.Add([]byte("version=1\nencoding=\"Shift_JIS\"\nRW 10 FLAT \"\x83\x66\x83\x42.vmdk\" 0\n"))
	f.Add([]byte("version=1\nencoding=\"GBK\"\nRW 10 FLAT \"\xb4\xc5\xc5\xcc.vmdk\" 0\n"))
	f.Add([]byte("version=1\nencoding=\"Big5\"\nRW 10 FLAT \"\xba\xcf\xba\xd0.vmdk\" 0\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := ParseDescriptor(b)
		if err != nil {
			return
		}
		if d.Version < 1 || d.Version > 3 || d.Sectors() > MaxCapacity/sectorSize {
			t.Fatalf("accepted %+v", d)
		}
		for _, e := range d.Extents {
			if e.Sectors < 0 || e.Offset < 0 || (e.Type != "ZERO" && e.File == "") {
				t.Fatalf("accepted extent %+v", e)
			}
		}
	})
}

// fuzzSeeds returns small real images: VMware's ext2 sample, a VMware-layout stream and its
// truncation, and the govmomi header area.
func fuzzSeeds(f *testing.F) [][]byte {
	var seeds [][]byte
	if b, err := os.ReadFile(sharedTestdata("ext2.vmdk")); err == nil {
		seeds = append(seeds, b)
	}
	raw := make([]byte, 256<<10)
	for i := range 70000 {
		raw[i] = byte(i * 31)
	}
	p := filepath.Join(f.TempDir(), "s.vmdk")
	writeVMwareStream(f, p, raw)
	if b, err := os.ReadFile(p); err == nil {
		seeds = append(seeds, b, b[:len(b)-1536])
	}
	return seeds
}

// fuzzOpener serves the top file at d/disk.vmdk and ext under every other name (extents and
// parents). The last file given (ext if any, else top) is followed by zeros up to pad bytes: so
// a 1 KiB input can stand for a descriptor of 40 extents of 32 MiB or a header whose 128 MiB
// directory is all holes.
func fuzzOpener(top, ext []byte, pad int64) *padOpener {
	if len(ext) > 0 {
		return &padOpener{
			files:    map[string]padFile{"d/disk.vmdk": {head: top, size: int64(len(top))}},
			fallback: &padFile{head: ext, size: max(int64(len(ext)), pad)},
		}
	}
	return &padOpener{files: map[string]padFile{"d/disk.vmdk": {head: top, size: max(int64(len(top)), pad)}}}
}

// fuzzPadUnit is the unit of FuzzOpenImage's pad argument; pads are taken modulo 4096 units
// (256 MiB).
const fuzzPadUnit = 64 << 10

// FuzzOpenImage opens arbitrary bytes as a VMDK (KDMV header, embedded descriptor, grain
// directory and tables, stream footer and markers, COWD, seSparse), with ext as every other
// file the top names and the last of them padded with zeros to pad×64 KiB, and reads, maps and describes
// it: nothing may panic, hang (a watchdog dumps every goroutine after 10 s) or allocate without
// bound. The work per input is bounded (a chain of at most 4 links, a 64 MiB metadata budget, a
// fixed number of reads and map calls, allocated-byte walks that read at most each file once),
// so a short -fuzz run in CI cannot stall; still run it with -fuzzminimizetime=1s, as
// minimizing a large input takes long. testdata/fuzz/FuzzOpenImage holds the images of issue
// 15 (TestWriteFuzzCorpus writes them).
func FuzzOpenImage(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s, []byte(nil), uint16(0))
	}
	f.Fuzz(func(t *testing.T, b, ext []byte, pad uint16) {
		tm := time.AfterFunc(10*time.Second, func() {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			panic(string(buf[:n]))
		})
		defer tm.Stop()
		ctx := context.Background()
		o := fuzzOpener(b, ext, int64(pad%4096)*fuzzPadUnit)
		c, err := Open(ctx, o, "d/disk.vmdk", Options{MaxLinks: 4, MetadataBudget: 64 << 20})
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 256<<10)
		for _, off := range []int64{0, c.Size() / 2, c.Size() - 1000} {
			if off < 0 {
				continue
			}
			n, err := c.ReadAt(ctx, buf, off)
			if err == nil && n != len(buf) {
				t.Fatalf("short read without error: %d", n)
			}
		}
		pos := int64(0)
		for i := 0; i < 16 && pos < c.Size(); i++ {
			m, err := c.Extents(ctx, pos, c.Size()-pos)
			if err != nil {
				break
			}
			if len(m) == 0 || m[0].Off != pos {
				t.Fatalf("Extents(%d): %+v", pos, m)
			}
			pos = m[len(m)-1].End()
		}
		if _, err := c.Info(ctx); err != nil {
			return
		}
	})
}

// FuzzStreamMarkers scans arbitrary bytes as the grain area of a stream.
func FuzzStreamMarkers(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		if len(s) > 128*sectorSize && bytes.Equal(s[8:12], []byte{1, 0, 3, 0}) {
			f.Add(s[128*sectorSize:])
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h := sparseHeader{version: 3, flags: flagCompressed | flagMarkers, capacity: 1 << 20, grainSize: 128,
			numGTEsPerGT: 512, overHead: 1, gdOffset: gdAtEnd, compressAlgo: 1}
		img := append(make([]byte, sectorSize), b...)
		src := &memSource{r: bytes.NewReader(img), name: "m"}
		m, err := scanStream(context.Background(), src, &h, h.capacity, newMetaBudget(0))
		if err != nil {
			return
		}
		if m.grains > len(img)/sectorSize {
			t.Fatalf("%d grains in %d sectors", m.grains, len(img)/sectorSize)
		}
		_ = m.describe()
		if len(b) >= 3*sectorSize {
			parseFooter(b[len(b)-3*sectorSize:])
		}
	})
}
