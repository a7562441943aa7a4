package vmdk

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/h2kvm/h2kvm/vfs"
)

// TestMapFile walks whole disks with Chain.MapFile in steps of random length and checks that
// every range it maps to a file holds exactly the bytes qemu-img convert produces there, that
// each answer makes progress within the asked range, and that flat and uncompressed sparse data
// is mapped while compressed grains never are.
func TestMapFile(t *testing.T) {
	const size = 8 << 20
	dir := t.TempDir()
	mk := func(name, sub string, cmds ...string) string {
		f := filepath.Join(dir, name)
		run(t, "qemu-img", "create", "-q", "-f", "vmdk", "-o", "subformat="+sub, f, "8M")
		qemuIO(t, f, cmds...)
		return f
	}
	flat := mk("flat.vmdk", "monolithicFlat", "write -P 0x11 0 3M", "write -P 0x12 5M 100k")
	base := mk("base.vmdk", "monolithicSparse", "write -P 0x21 0 2M", "write -P 0x22 4M 1M", "write -P 0x23 7M 64k")
	top := filepath.Join(dir, "top.vmdk")
	run(t, "qemu-img", "create", "-q", "-f", "vmdk", "-b", "base.vmdk", "-F", "vmdk", top)
	// Out of order, so that neighbouring grains of the top (256k, 320k) are not neighbours in its file.
	qemuIO(t, top, "write -P 0x31 1536k 128k", "write -P 0x32 320k 64k", "write -P 0x34 256k 64k", "write -P 0x33 4160k 200k")
	stream := filepath.Join(dir, "stream.vmdk")
	run(t, "qemu-img", "convert", "-f", "vmdk", "-O", "vmdk", "-o", "subformat=streamOptimized", base, stream)

	for _, tc := range []struct {
		name   string
		file   string
		mapped bool
	}{{"flat", flat, true}, {"sparse", base, true}, {"chain", top, true}, {"stream", stream, false}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			want := qemuRaw(t, tc.file)
			c, err := Open(ctx, vfs.LocalOpener{}, tc.file, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if c.Size() != size || int64(len(want)) != size {
				t.Fatalf("size %d, qemu %d", c.Size(), len(want))
			}
			r := rand.New(rand.NewPCG(1, uint64(len(tc.name))))
			var mapped int64
			for off := int64(0); off < size; {
				n := min(size-off, 1+r.Int64N(1<<20))
				f, fo, m, err := c.MapFile(ctx, off, n)
				if err != nil {
					t.Fatalf("MapFile(%d, %d): %v", off, n, err)
				}
				if m <= 0 || m > n {
					t.Fatalf("MapFile(%d, %d) answered for %d bytes", off, n, m)
				}
				if f != nil {
					got := make([]byte, m)
					if _, err := f.ReadAt(got, fo); err != nil {
						t.Fatalf("reading %d mapped bytes at file offset %d: %v", m, fo, err)
					}
					if !bytes.Equal(got, want[off:off+m]) {
						t.Fatalf("MapFile(%d, %d) → file offset %d: bytes differ from qemu-img convert", off, n, fo)
					}
					mapped += m
				}
				off += m
			}
			if tc.mapped && mapped == 0 {
				t.Fatal("nothing was mapped to a file")
			}
			if !tc.mapped && mapped != 0 {
				t.Fatalf("%d bytes of compressed grains were mapped to a file", mapped)
			}
			if _, _, _, err := c.MapFile(ctx, size-10, 11); !errors.Is(err, vfs.ErrOutOfRange) {
				t.Fatalf("MapFile past the end: %v, want ErrOutOfRange", err)
			}
		})
	}
}
