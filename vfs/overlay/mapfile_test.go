package overlay_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/h2kvm/h2kvm/vfs"
	"github.com/h2kvm/h2kvm/vfs/overlay"
)

// fileBase is a base device whose bytes also lie in a local file; it maps every byte.
type fileBase struct {
	*vfs.MemDevice
	f *os.File
}

func (b fileBase) MapFile(ctx context.Context, off, length int64) (*os.File, int64, int64, error) {
	return b.f, off, length, nil
}

// TestMapFile writes, zeroes and trims blocks of an overlay over a base that maps to a file,
// then walks the device with MapFile: every mapped range must hold exactly what ReadAt returns
// (overlay blocks from the overlay file, the rest from the base's file), zeroed blocks must not
// be mapped, and answers must make progress.
func TestMapFile(t *testing.T) {
	const size = 2 << 20
	ctx := context.Background()
	mem, want := randomBase(t, size, 3)
	path := filepath.Join(t.TempDir(), "base")
	if err := os.WriteFile(path, want, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	o := open(t, fileBase{mem, f}, overlay.Config{Map: &memMap{}})
	if _, err := o.WriteAt(ctx, bytes.Repeat([]byte{0xab}, 3*bs+100), bs/2); err != nil {
		t.Fatal(err)
	}
	if err := o.Zero(ctx, 10*bs, 2*bs); err != nil {
		t.Fatal(err)
	}
	if err := o.Trim(ctx, 20*bs, bs); err != nil {
		t.Fatal(err)
	}
	merged := make([]byte, size)
	if _, err := o.ReadAt(ctx, merged, 0); err != nil {
		t.Fatal(err)
	}
	var fromOverlay, fromBase int64
	for off := int64(0); off < size; {
		n := min(size-off, 100000)
		mf, fo, m, err := o.MapFile(ctx, off, n)
		if err != nil {
			t.Fatal(err)
		}
		if m <= 0 || m > n {
			t.Fatalf("MapFile(%d, %d) answered for %d bytes", off, n, m)
		}
		if mf != nil {
			got := make([]byte, m)
			if _, err := mf.ReadAt(got, fo); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, merged[off:off+m]) {
				t.Fatalf("MapFile(%d, %d) → %s at %d: bytes differ from ReadAt", off, n, mf.Name(), fo)
			}
			if mf == f {
				fromBase += m
			} else {
				fromOverlay += m
			}
		}
		if mf != nil && off >= 10*bs && off < 12*bs {
			t.Fatalf("zeroed block at %d mapped to %s", off, mf.Name())
		}
		off += m
	}
	if fromOverlay == 0 || fromBase == 0 {
		t.Fatalf("mapped %d bytes from the overlay file and %d from the base", fromOverlay, fromBase)
	}
	if _, _, _, err := o.MapFile(ctx, size-1, 2); err == nil {
		t.Fatal("MapFile past the end succeeded")
	}
}
