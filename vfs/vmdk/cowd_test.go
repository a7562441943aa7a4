package vmdk

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/h2kvm/h2kvm/internal/testenv"
	"github.com/h2kvm/h2kvm/vfs"
	"github.com/h2kvm/h2kvm/vfs/vmdk/vmdkgen"
)

func esxRun(t testing.TB, name string, args ...string) []byte {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// esxQemuRaw returns what `qemu-img convert -O raw` makes of a VMDK.
func esxQemuRaw(t testing.TB, path string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out.raw")
	esxRun(t, "qemu-img", "convert", "-f", "vmdk", "-O", "raw", path, out)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// esxQemuKinds returns, per 512-byte sector, the kind qemu-img map reports for the top link:
// Data or Zero when the top link (depth 0) supplies it, Hole otherwise (qemu reports a range no
// link holds as depth 0, present false).
func esxQemuKinds(t testing.TB, path string) []vfs.ExtentKind {
	t.Helper()
	var m []struct {
		Start, Length int64
		Depth         int
		Present       bool
		Zero, Data    bool
	}
	if err := json.Unmarshal(esxRun(t, "qemu-img", "map", "-f", "vmdk", "--output=json", path), &m); err != nil {
		t.Fatal(err)
	}
	var kinds []vfs.ExtentKind
	for _, e := range m {
		k := vfs.Hole
		if e.Depth == 0 && e.Present {
			switch {
			case e.Data:
				k = vfs.Data
			case e.Zero:
				k = vfs.Zero
			}
		}
		for range e.Length / 512 {
			kinds = append(kinds, k)
		}
	}
	return kinds
}

// esxExtentKinds returns per-sector kinds from mapRange, looping over prefixes.
func esxExtentKinds(t testing.TB, r extentReader) []vfs.ExtentKind {
	t.Helper()
	ctx := context.Background()
	var kinds []vfs.ExtentKind
	for off := int64(0); off < r.size(); {
		ex, err := r.mapRange(ctx, off, r.size()-off)
		if err != nil {
			t.Fatal(err)
		}
		if len(ex) == 0 {
			t.Fatalf("mapRange(%d) returned nothing", off)
		}
		for _, e := range ex {
			if e.Off != off || e.Len <= 0 {
				t.Fatalf("mapRange: extent %+v, want start %d", e, off)
			}
			for range e.Len / 512 {
				kinds = append(kinds, e.Kind)
			}
			off = e.End()
		}
	}
	return kinds
}

// esxMakeBase creates a hosted sparse base with qemu-img and writes patterns with qemu-io. It
// returns the base's descriptor name, its CID and its raw content.
func esxMakeBase(t testing.TB, dir string, size int64) (string, uint32, []byte) {
	t.Helper()
	testenv.NeedTool(t, "qemu-img", "qemu-io")
	base := filepath.Join(dir, "base.vmdk")
	esxRun(t, "qemu-img", "create", "-q", "-f", "vmdk", base, fmt.Sprint(size))
	esxRun(t, "qemu-io", "-f", "vmdk",
		"-c", "write -P 0x11 0 1M",
		"-c", "write -P 0x22 1536k 1M",
		"-c", "write -P 0x33 3000k 64k", base)
	cid, err := vmdkgen.ReadCID(base)
	if err != nil {
		t.Fatal(err)
	}
	return "base.vmdk", cid, esxQemuRaw(t, base)
}

// esxPattern returns n bytes that differ from offset to offset.
func esxPattern(seed byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7) + byte(i>>9)
	}
	return b
}

// esxDeltaWrites crosses grain and grain-table boundaries and writes partial grains.
func esxDeltaWrites() []vmdkgen.Write {
	return []vmdkgen.Write{
		{Off: 0, Data: esxPattern(1, 4096)},
		{Off: 10*512 + 100, Data: esxPattern(2, 3000)},
		{Off: 2<<20 - 1024, Data: esxPattern(3, 8192)}, // crosses the 2 MiB table boundary of 1-sector COWD
		{Off: 1<<20 + 300, Data: esxPattern(4, 70000)},
		{Off: 4<<20 - 512, Data: esxPattern(5, 512)},
		{Off: 4096, Data: esxPattern(6, 100)},
	}
}

// esxCheckDelta checks a generated delta (written as files, its parent's bytes in parentRaw)
// three ways: the generator's expected bytes, qemu-img's reading of the descriptor, and our
// extent reader opened with open. It returns the expected bytes.
func esxCheckDelta(t *testing.T, open func(context.Context, vfs.Source) (extentReader, error), l vmdkgen.Link, files vmdkgen.Files, parentRaw []byte) []byte {
	t.Helper()
	want, err := l.Expected(parentRaw, files.GrainSize)
	if err != nil {
		t.Fatal(err)
	}
	if got := esxQemuRaw(t, files.Descriptor); !bytes.Equal(got, want) {
		t.Fatalf("qemu-img convert of %s differs from the generator's bytes (first at %d)", filepath.Base(files.Descriptor), esxFirstDiff(got, want))
	}
	esxCheckExtent(t, open, files.Extent, files.Descriptor, want)
	return want
}

// esxCheckExtent opens a delta's extent file directly and checks it against qemu: bytes of the
// ranges qemu says the top link supplies, zeros elsewhere, and per-sector kinds.
func esxCheckExtent(t *testing.T, open func(context.Context, vfs.Source) (extentReader, error), extent, desc string, want []byte) {
	t.Helper()
	ctx := context.Background()
	src, err := vfs.OpenFile(extent)
	if err != nil {
		t.Fatal(err)
	}
	r, err := open(ctx, src)
	if err != nil {
		src.Close()
		t.Fatal(err)
	}
	defer r.close()
	if r.size() != int64(len(want)) {
		t.Fatalf("size %d, want %d", r.size(), len(want))
	}
	qk := esxQemuKinds(t, desc)
	ok := esxExtentKinds(t, r)
	if len(qk) != len(ok) {
		t.Fatalf("qemu map covers %d sectors, ours %d", len(qk), len(ok))
	}
	for i := range qk {
		if qk[i] != ok[i] {
			t.Fatalf("sector %d: qemu says %v, we say %v", i, qk[i], ok[i])
		}
	}
	got := make([]byte, r.size())
	if err := r.readAt(ctx, got, 0); err != nil {
		t.Fatal(err)
	}
	zero := make([]byte, 512)
	for i, k := range ok {
		g, w := got[i*512:(i+1)*512], want[i*512:(i+1)*512]
		if k == vfs.Data && !bytes.Equal(g, w) || k != vfs.Data && !bytes.Equal(g, zero) {
			t.Fatalf("sector %d (%v) reads wrong", i, k)
		}
	}
	// Unaligned reads of odd sizes equal the same slices of the whole read.
	for _, rr := range [][2]int64{{1, 1}, {511, 2}, {4000, 9000}, {2<<20 - 700, 1500}, {r.size() - 3, 3}} {
		p := make([]byte, rr[1])
		if err := r.readAt(ctx, p, rr[0]); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(p, got[rr[0]:rr[0]+rr[1]]) {
			t.Fatalf("read of %d bytes at %d differs from the whole read", rr[1], rr[0])
		}
	}
	n, err := r.allocated(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var data int64
	for _, k := range ok {
		if k == vfs.Data {
			data += 512
		}
	}
	if n != data {
		t.Fatalf("allocated %d, mapped data %d", n, data)
	}
}

func TestCOWDAgainstQemu(t *testing.T) {
	const size = 4 << 20
	for _, tc := range []struct {
		grain   uint32
		reverse bool
	}{{1, false}, {1, true}, {8, false}, {128, true}} {
		t.Run(fmt.Sprintf("grain%d-reverse%v", tc.grain, tc.reverse), func(t *testing.T) {
			dir := t.TempDir()
			parent, cid, baseRaw := esxMakeBase(t, dir, size)
			l := vmdkgen.Link{
				Name: "snap", ParentName: parent, ParentCID: cid, VirtualSize: size,
				Writes: esxDeltaWrites(), Zeros: []vmdkgen.Range{{Off: 3000 << 10, Len: 4096}},
				Parent: bytes.NewReader(baseRaw), GrainSectors: tc.grain, Reverse: tc.reverse,
			}
			files, err := vmdkgen.WriteCOWD(dir, l)
			if err != nil {
				t.Fatal(err)
			}
			esxCheckDelta(t, openCOWD, l, files, baseRaw)
		})
	}
}

func TestCOWDWithoutParent(t *testing.T) {
	testenv.NeedTool(t, "qemu-img")
	dir := t.TempDir()
	l := vmdkgen.Link{Name: "lone", VirtualSize: 3<<20 + 512, Writes: esxDeltaWrites()[:4]}
	files, err := vmdkgen.WriteCOWD(dir, l)
	if err != nil {
		t.Fatal(err)
	}
	esxCheckDelta(t, openCOWD, l, files, nil)
}

func esxFirstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// esxMemSource is an in-memory Source for fault and fuzz tests.
type esxMemSource struct {
	b    []byte
	name string
}

func (m *esxMemSource) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	if off >= int64(len(m.b)) {
		return 0, io.EOF
	}
	n := copy(p, m.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
func (m *esxMemSource) Size() int64  { return int64(len(m.b)) }
func (m *esxMemSource) Name() string { return m.name }
func (m *esxMemSource) Close() error { return nil }

// esxGenExtent writes a link with vmdkgen and returns its extent bytes.
func esxGenExtent(t testing.TB, cowd bool, l vmdkgen.Link) []byte {
	t.Helper()
	dir := t.TempDir()
	var files vmdkgen.Files
	var err error
	if cowd {
		files, err = vmdkgen.WriteCOWD(dir, l)
	} else {
		files, err = vmdkgen.WriteSESparse(dir, l)
	}
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(files.Extent)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// esxReadAll opens an extent from bytes and reads it whole; it reports the first error.
func esxReadAll(open func(context.Context, vfs.Source) (extentReader, error), b []byte) error {
	ctx := context.Background()
	r, err := open(ctx, &esxMemSource{b: b, name: "test.vmdk"})
	if err != nil {
		return err
	}
	defer r.close()
	p := make([]byte, min(r.size(), 8<<20))
	if err := r.readAt(ctx, p, 0); err != nil {
		return err
	}
	_, err = r.mapRange(ctx, 0, r.size())
	return err
}

func TestCOWDBadInput(t *testing.T) {
	good := esxGenExtent(t, true, vmdkgen.Link{Name: "x", VirtualSize: 1 << 20, Writes: []vmdkgen.Write{{Off: 0, Data: esxPattern(9, 8192)}}})
	if err := esxReadAll(openCOWD, good); err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	gtSector := le.Uint32(good[2048:])
	grain0 := le.Uint32(good[gtSector*512:])
	for _, tc := range []struct {
		name string
		mut  func(b []byte) []byte
		want error
	}{
		{"bad magic", func(b []byte) []byte { b[0] = 'X'; return b }, vfs.ErrCorrupt},
		{"version 2", func(b []byte) []byte { le.PutUint32(b[4:], 2); return b }, vfs.ErrUnsupported},
		{"zero capacity", func(b []byte) []byte { le.PutUint32(b[12:], 0); return b }, vfs.ErrCorrupt},
		{"zero grain size", func(b []byte) []byte { le.PutUint32(b[16:], 0); return b }, vfs.ErrCorrupt},
		{"absurd grain size", func(b []byte) []byte { le.PutUint32(b[16:], 1<<30); return b }, vfs.ErrCorrupt},
		{"directory too short", func(b []byte) []byte { le.PutUint32(b[12:], 0xffffffff); return b }, vfs.ErrCorrupt},
		{"absurd directory", func(b []byte) []byte { le.PutUint32(b[12:], 0xffffffff); le.PutUint32(b[24:], 0xffffffff); return b }, vfs.ErrCorrupt},
		{"directory past end", func(b []byte) []byte { le.PutUint32(b[20:], 1<<30); return b }, vfs.ErrTruncated},
		{"directory in header", func(b []byte) []byte { le.PutUint32(b[20:], 1); return b }, vfs.ErrCorrupt},
		{"table past end", func(b []byte) []byte { le.PutUint32(b[2048:], 1<<30); return b }, vfs.ErrTruncated},
		{"table in header", func(b []byte) []byte { le.PutUint32(b[2048:], 2); return b }, vfs.ErrCorrupt},
		{"grain past end", func(b []byte) []byte { le.PutUint32(b[gtSector*512:], 0xfffffff0); return b }, vfs.ErrTruncated},
		{"grain in header", func(b []byte) []byte { le.PutUint32(b[gtSector*512:], 1); return b }, vfs.ErrCorrupt},
		{"truncated in grains", func(b []byte) []byte { return b[:grain0*512+100] }, vfs.ErrTruncated},
		{"truncated in header", func(b []byte) []byte { return b[:20] }, vfs.ErrTruncated},
		{"empty", func(b []byte) []byte { return nil }, vfs.ErrTruncated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := esxReadAll(openCOWD, tc.mut(bytes.Clone(good)))
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), "test.vmdk") {
				t.Fatalf("error %q does not name the file", err)
			}
		})
	}
}

func TestCOWDConcurrentReads(t *testing.T) {
	// Many grains across many tables with a tiny cache: readers share and evict tables.
	var writes []vmdkgen.Write
	for i := range 64 {
		writes = append(writes, vmdkgen.Write{Off: int64(i) * (2 << 20) / 2, Data: esxPattern(byte(i), 5000)})
	}
	l := vmdkgen.Link{Name: "c", VirtualSize: 64 << 20, Writes: writes, Reverse: true}
	b := esxGenExtent(t, true, l)
	want, err := l.Expected(nil, 512)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r, err := openCOWD(ctx, &esxMemSource{b: b, name: "c.vmdk"})
	if err != nil {
		t.Fatal(err)
	}
	r.(*esxGrainMap).cache.max = 3
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Go(func() {
			p := make([]byte, 300000)
			for i := range 40 {
				off := int64((i*7919+w*104729)%(64<<20-len(p))) &^ 511
				if err := r.readAt(ctx, p, off); err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(p, want[off:off+int64(len(p))]) {
					errs <- fmt.Errorf("read at %d differs", off)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Block status over 32 tables (more than one mapRange call loads) marks exactly the
	// written sectors as data.
	kinds := esxExtentKinds(t, r)
	written := make([]bool, len(kinds))
	for _, w := range writes {
		for s := w.Off / 512; s*512 < w.Off+int64(len(w.Data)); s++ {
			written[s] = true
		}
	}
	for i, k := range kinds {
		if (k == vfs.Data) != written[i] || k == vfs.Zero {
			t.Fatalf("sector %d: %v, written %v", i, k, written[i])
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := r.readAt(cctx, make([]byte, 1<<20), 0); !errors.Is(err, context.Canceled) || err != context.Canceled {
		t.Fatalf("cancelled read: %v, want context.Canceled unwrapped", err)
	}
	if err := r.readAt(ctx, make([]byte, 2), 64<<20-1); !errors.Is(err, vfs.ErrOutOfRange) {
		t.Fatalf("read past end: %v", err)
	}
}

// BenchmarkESXRead reads a fully allocated 32 MiB extent in 1 MiB requests, for both formats,
// beside a plain read of the same file as the peer: the ratio is the cost of the grain map.
func BenchmarkESXRead(b *testing.B) {
	const size = 32 << 20
	data := esxPattern(3, size)
	for _, tc := range []struct {
		name  string
		cowd  bool
		grain uint32
		open  func(context.Context, vfs.Source) (extentReader, error)
	}{{"cowd-512B", true, 1, openCOWD}, {"cowd-64K", true, 128, openCOWD}, {"sesparse-4K", false, 0, openSESparse}} {
		l := vmdkgen.Link{Name: "bench", VirtualSize: size, GrainSectors: tc.grain, Writes: []vmdkgen.Write{{Off: 0, Data: data}}}
		file := esxGenExtent(b, tc.cowd, l)
		p := make([]byte, 1<<20)
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				r, err := tc.open(b.Context(), &esxMemSource{b: file, name: "bench"})
				if err != nil {
					b.Fatal(err)
				}
				for off := int64(0); off < size; off += int64(len(p)) {
					if err := r.readAt(b.Context(), p, off); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
		b.Run(tc.name+"-peer", func(b *testing.B) {
			b.SetBytes(size)
			src := &esxMemSource{b: file, name: "bench"}
			for b.Loop() {
				for off := int64(0); off < size; off += int64(len(p)) {
					if err := vfs.ReadFull(b.Context(), src, p, off); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
