package vmdk

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/h2kvm/h2kvm/vfs"
	"github.com/h2kvm/h2kvm/vfs/vfstest"
)

// writeVMwareStream writes raw as a streamOptimized VMDK laid out the way VMware writes it
// (header with the grain directory at the end, grain markers, GT markers, GD marker, footer,
// end-of-stream), which qemu-img does not produce. qemu-img reads it back as a cross-check.
func writeVMwareStream(t testing.TB, path string, raw []byte) {
	t.Helper()
	const grain = 128 // sectors
	const gb = grain * sectorSize
	capacity := uint64(len(raw)) / sectorSize
	var out bytes.Buffer
	header := func(gdOff uint64) []byte {
		h := make([]byte, sectorSize)
		copy(h, "KDMV")
		le := binary.LittleEndian
		le.PutUint32(h[4:], 3)
		le.PutUint32(h[8:], flagNewlineTest|flagCompressed|flagMarkers)
		le.PutUint64(h[12:], capacity)
		le.PutUint64(h[20:], grain)
		le.PutUint64(h[28:], 1)
		le.PutUint64(h[36:], 20)
		le.PutUint32(h[44:], 512)
		le.PutUint64(h[56:], gdOff)
		le.PutUint64(h[64:], 128)
		copy(h[73:], "\n \r\n")
		le.PutUint16(h[77:], 1)
		return h
	}
	out.Write(header(gdAtEnd))
	desc := fmt.Sprintf("# Disk DescriptorFile\nversion=1 \nCID=1234abcd \nparentCID=ffffffff \ncreateType=\"streamOptimized\" \n\n# Extent description\nRDONLY %d SPARSE \"generated-stream.vmdk\"\n\nddb.adapterType = \"lsilogic\"\n", capacity)
	d := make([]byte, 20*sectorSize)
	copy(d, desc)
	out.Write(d)
	out.Write(make([]byte, (128-21)*sectorSize))
	pad := func() {
		if r := out.Len() % sectorSize; r != 0 {
			out.Write(make([]byte, sectorSize-r))
		}
	}
	metaMarker := func(sectors uint64, typ uint32) {
		m := make([]byte, sectorSize)
		binary.LittleEndian.PutUint64(m, sectors)
		binary.LittleEndian.PutUint32(m[12:], typ)
		out.Write(m)
	}
	nGrains := (len(raw) + gb - 1) / gb
	gts := make([][]uint32, (nGrains+511)/512)
	for g := 0; g < nGrains; g++ {
		chunk := raw[g*gb : min(len(raw), (g+1)*gb)]
		if bytes.Count(chunk, []byte{0}) == len(chunk) {
			continue // zero grains are left out of a stream
		}
		var z bytes.Buffer
		zw := zlib.NewWriter(&z)
		zw.Write(chunk)
		zw.Close()
		if gts[g/512] == nil {
			gts[g/512] = make([]uint32, 512)
		}
		gts[g/512][g%512] = uint32(out.Len() / sectorSize)
		m := make([]byte, 12)
		binary.LittleEndian.PutUint64(m, uint64(g*grain))
		binary.LittleEndian.PutUint32(m[8:], uint32(z.Len()))
		out.Write(m)
		out.Write(z.Bytes())
		pad()
	}
	gd := make([]uint32, len(gts))
	for i, gt := range gts {
		if gt == nil {
			continue
		}
		metaMarker(4, markerGT)
		gd[i] = uint32(out.Len() / sectorSize)
		binary.Write(&out, binary.LittleEndian, gt)
	}
	metaMarker(1, markerGD)
	gdOff := uint64(out.Len() / sectorSize)
	binary.Write(&out, binary.LittleEndian, gd)
	pad()
	metaMarker(1, markerFooter)
	out.Write(header(gdOff))
	metaMarker(0, markerEOS)
	if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func testRaw() []byte {
	raw := make([]byte, testSize)
	rng := rand.New(rand.NewPCG(5, 6)) // incompressible, so grains take room in the file
	for i := 0; i < 300000; i++ {
		raw[i] = byte(rng.Uint32())
	}
	for i := 2 << 20; i < 3<<20+777; i++ {
		raw[i] = byte(i>>12) | 1
	}
	copy(raw[testSize-5:], "tail!")
	return raw
}

func TestVMwareStream(t *testing.T) {
	dir := t.TempDir()
	raw := testRaw()
	f := filepath.Join(dir, "s.vmdk")
	writeVMwareStream(t, f, raw)
	if !bytes.Equal(qemuRaw(t, f), raw) {
		t.Fatal("qemu-img reads the generated stream differently from its source: the test writer is wrong")
	}
	c := checkAgainstQemu(t, dir, "s.vmdk")
	info, err := c.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if e := info.Links[0].Extents[0]; e.Format != "stream" || e.Access != "RDONLY" || len(e.Notes) != 0 {
		t.Fatalf("extent info: %+v", e)
	}
}

// TestTruncatedStream cuts a VMware-layout stream at several places: Open rebuilds the map from
// the markers, what is there reads as it should, what is lost fails with ErrTruncated.
func TestTruncatedStream(t *testing.T) {
	dir := t.TempDir()
	raw := testRaw()
	full := filepath.Join(dir, "full.vmdk")
	writeVMwareStream(t, full, raw)
	b, err := os.ReadFile(full)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, cut := range []int{len(b) - 512, len(b) - 1536, len(b) / 2, len(b)/2 + 100, 128*512 + 3000} {
		t.Run(fmt.Sprint(cut), func(t *testing.T) {
			name := filepath.Join(dir, fmt.Sprintf("cut%d.vmdk", cut))
			if err := os.WriteFile(name, b[:cut], 0o644); err != nil {
				t.Fatal(err)
			}
			c, err := Open(ctx, vfs.LocalOpener{}, name, Options{})
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer c.Close()
			sm := c.links[0].extents[0].r.(*sparseExtent).stream
			if sm == nil {
				t.Fatal("no marker scan")
			}
			// Every grain either reads exactly as the source or fails with ErrTruncated; once
			// one fails, all later non-zero grains must fail too (they lie beyond the cut).
			failed := false
			for off := 0; off < testSize; off += 65536 {
				p := make([]byte, 65536)
				_, err := c.ReadAt(ctx, p, int64(off))
				switch {
				case err == nil && !bytes.Equal(p, raw[off:off+65536]):
					t.Fatalf("grain at %d reads wrong bytes", off)
				case err == nil && failed && !isAllZero(raw[off:off+65536]) && sm.complete == false:
					t.Fatalf("grain at %d read after an earlier one was lost", off)
				case err != nil && !errors.Is(err, vfs.ErrTruncated):
					t.Fatalf("grain at %d: %v, want ErrTruncated", off, err)
				case err != nil:
					failed = true
				}
			}
			info, err := c.Info(ctx)
			if err != nil || len(info.Links[0].Extents[0].Notes) == 0 {
				t.Fatalf("Info: %+v %v; want a note about the stream", info, err)
			}
			if cut < len(b)/2+200 && !failed {
				t.Fatalf("stream cut at %d, inside the grains, but nothing failed", cut)
			}
		})
	}
}

func isAllZero(b []byte) bool { return bytes.Count(b, []byte{0}) == len(b) }

// TestGovmomiTruncatedStream reads VMware's own streamOptimized sample, cut at 1 MiB.
func TestGovmomiTruncatedStream(t *testing.T) {
	modcache := run(t, "go", "env", "GOMODCACHE")
	src := filepath.Join(string(bytes.TrimSpace(modcache)), "github.com/vmware/govmomi@v0.53.0/vapi/library/testdata/ttylinux-pc_i486-16.1-disk1.vmdk")
	b, err := os.ReadFile(src)
	if err != nil {
		t.Skipf("govmomi sample: %v", err)
	}
	dir := t.TempDir()
	name := filepath.Join(dir, "ttylinux.vmdk")
	if err := os.WriteFile(name, b, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c, err := Open(ctx, vfs.LocalOpener{Root: dir}, name, Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer c.Close()
	if c.Size() != 61440*512 {
		t.Fatalf("size %d", c.Size())
	}
	// The first grain holds the MBR; it is there.
	p := make([]byte, 65536)
	if _, err := c.ReadAt(ctx, p, 0); err != nil {
		t.Fatalf("first grain: %v", err)
	}
	if p[510] != 0x55 || p[511] != 0xaa {
		t.Fatalf("first sector has no boot signature: % x", p[510:512])
	}
	// Read the disk grain by grain: a prefix reads, then everything fails as truncated.
	good := 0
	var firstErr error
	for off := int64(0); off < c.Size(); off += 65536 {
		if _, err := c.ReadAt(ctx, p, off); err != nil {
			if !errors.Is(err, vfs.ErrTruncated) {
				t.Fatalf("at %d: %v, want ErrTruncated", off, err)
			}
			if firstErr == nil {
				firstErr = err
			}
		} else if firstErr != nil {
			t.Fatalf("grain at %d read after an earlier grain was lost", off)
		} else {
			good++
		}
	}
	if firstErr == nil || good == 0 {
		t.Fatalf("%d grains read, error %v", good, firstErr)
	}
	t.Logf("%d grains readable; then: %v", good, firstErr)
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if l := info.Links[0]; l.CreateType != "streamOptimized" || l.CID != "bb17cc39" || l.AdapterType != "lsilogic" ||
		l.Extents[0].Access != "RDONLY" || len(l.Extents[0].Notes) == 0 {
		t.Fatalf("Info: %+v", l)
	}
	t.Logf("note: %s", info.Links[0].Extents[0].Notes[0])
	// The full read through io.Copy-like loop reports the truncation with the file name.
	buf := make([]byte, c.Size())
	_, err = c.ReadAt(ctx, buf, 0)
	if !errors.Is(err, vfs.ErrTruncated) || !bytes.Contains([]byte(err.Error()), []byte("ttylinux.vmdk")) {
		t.Fatalf("whole read: %v", err)
	}
	vfstestPrefix(t, c, good*65536)
}

// vfstestPrefix runs the device contract on the readable prefix of a device.
func vfstestPrefix(t *testing.T, c *Chain, n int) {
	want := make([]byte, n)
	if _, err := c.ReadAt(context.Background(), want, 0); err != nil {
		t.Fatal(err)
	}
	vfstest.TestDevice(t, prefixDevice{c, int64(n)}, want)
}

type prefixDevice struct {
	*Chain
	n int64
}

func (d prefixDevice) Size() int64 { return d.n }

func (d prefixDevice) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if off >= d.n {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		return 0, io.EOF
	}
	var eof error
	if int64(len(p)) > d.n-off {
		p, eof = p[:d.n-off], io.EOF
	}
	n, err := d.Chain.ReadAt(ctx, p, off)
	if err == nil {
		err = eof
	}
	return n, err
}

func (d prefixDevice) Extents(ctx context.Context, off, length int64) ([]vfs.Extent, error) {
	if off > d.n || off < 0 {
		return nil, vfs.ErrOutOfRange
	}
	return d.Chain.Extents(ctx, off, min(length, d.n-off))
}
