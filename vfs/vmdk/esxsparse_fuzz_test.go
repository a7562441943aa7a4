package vmdk

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/h2kvm/h2kvm/vfs"
	"github.com/h2kvm/h2kvm/vfs/vmdk/vmdkgen"
)

// esxFuzzOpen opens an extent from arbitrary bytes and exercises every method. It fails the
// test on a panic (by not recovering) or on an error that wraps none of the format sentinels.
func esxFuzzOpen(t *testing.T, open func(context.Context, vfs.Source) (extentReader, error), b []byte) {
	ctx := context.Background()
	check := func(err error) bool {
		if err == nil {
			return true
		}
		if !errors.Is(err, vfs.ErrCorrupt) && !errors.Is(err, vfs.ErrTruncated) && !errors.Is(err, vfs.ErrUnsupported) {
			t.Fatalf("error wraps no sentinel: %v", err)
		}
		return false
	}
	r, err := open(ctx, &esxMemSource{b: b, name: "fuzz.vmdk"})
	if !check(err) {
		return
	}
	defer r.close()
	size := r.size()
	if size <= 0 {
		t.Fatalf("opened with size %d", size)
	}
	p := make([]byte, min(size, 64<<10))
	check(r.readAt(ctx, p, 0))
	check(r.readAt(ctx, p, size-int64(len(p))))
	ex, err := r.mapRange(ctx, 0, size)
	if check(err) {
		off := int64(0)
		for _, e := range ex {
			if e.Off != off || e.Len <= 0 || e.End() > size {
				t.Fatalf("bad extent %+v at %d", e, off)
			}
			off = e.End()
		}
	}
	if m, ok := r.(*esxGrainMap); ok && m.numTables <= 64 {
		n, err := r.allocated(ctx)
		if check(err) && (n < 0 || n > size) {
			t.Fatalf("allocated %d of %d", n, size)
		}
	}
}

// esxFuzzLinks are the valid links the seeds and the patch targets start from.
func esxFuzzLinks(cowd bool) []vmdkgen.Link {
	ls := []vmdkgen.Link{
		{Name: "a", VirtualSize: 1 << 20, Writes: []vmdkgen.Write{{Off: 0, Data: esxPattern(1, 9000)}, {Off: 700 << 10, Data: esxPattern(2, 100)}}},
		{Name: "b", VirtualSize: 3<<20 + 512, GrainSectors: 8, Reverse: true, Writes: []vmdkgen.Write{{Off: 2<<20 - 3, Data: esxPattern(3, 5000)}}},
		{Name: "c", VirtualSize: 64 << 10},
	}
	if !cowd {
		for i := range ls {
			ls[i].GrainSectors = 0
			ls[i].Zeros = []vmdkgen.Range{{Off: 8192, Len: 1}}
			ls[i].Unmapped = []vmdkgen.Range{{Off: 16384, Len: 4096}}
		}
	}
	return ls
}

// esxFuzzRaw seeds a whole-file target with small files (large inputs make the fuzzer crawl):
// the header and directory of each valid file, and one valid file whole.
func esxFuzzRaw(f *testing.F, cowd bool, open func(context.Context, vfs.Source) (extentReader, error)) {
	for i, l := range esxFuzzLinks(cowd) {
		b := esxGenExtent(f, cowd, l)
		f.Add(b[:min(len(b), 4096)])
		if i == 2 {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) { esxFuzzOpen(t, open, b) })
}

// esxFuzzPatched fuzzes valid files with a few words overwritten: each 6-byte record of the
// input is a 16-bit word index (×4 bytes) and a 32-bit value; the first byte picks the file and
// how much of its end to cut.
func esxFuzzPatched(f *testing.F, cowd bool, open func(context.Context, vfs.Source) (extentReader, error)) {
	var files [][]byte
	for _, l := range esxFuzzLinks(cowd) {
		files = append(files, esxGenExtent(f, cowd, l))
	}
	f.Add([]byte{0})
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0x82, 3, 0, 0xff, 0xff, 0, 0})
	f.Add([]byte{0x40, 0x00, 0x02, 0x10, 0, 0, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 {
			return
		}
		b := bytes.Clone(files[int(in[0]&3)%len(files)])
		if cut := int(in[0] >> 2); cut > 0 {
			b = b[:len(b)-len(b)*cut/128]
		}
		for rec := in[1:]; len(rec) >= 6; rec = rec[6:] {
			off := int(binary.LittleEndian.Uint16(rec)) * 4
			if off+4 <= len(b) {
				copy(b[off:], rec[2:6])
			}
		}
		esxFuzzOpen(t, open, b)
	})
}

func FuzzCOWD(f *testing.F)            { esxFuzzRaw(f, true, openCOWD) }
func FuzzCOWDPatched(f *testing.F)     { esxFuzzPatched(f, true, openCOWD) }
func FuzzSESparse(f *testing.F)        { esxFuzzRaw(f, false, openSESparse) }
func FuzzSESparsePatched(f *testing.F) { esxFuzzPatched(f, false, openSESparse) }
