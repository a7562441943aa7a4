package libnbd

import (
	"context"
	"errors"
	"testing"

	"github.com/h2kvm/h2kvm/internal/libnbd/nbdkittest"
)

// TestBlockStatus asks nbdkit's data plugin (32 KiB pages, sparse elsewhere) for the map of an
// 8 MiB export, whole and in pieces.
func TestBlockStatus(t *testing.T) {
	sock := nbdkittest.Start(t, "data", "data=1 2 3 @1048576 4 5 @4194303 9", "size=8M")
	h, err := Create()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	if err := h.AddMetaContext(MetaContextBaseAllocation); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := h.ConnectURI(ctx, "nbd+unix:///?socket="+sock); err != nil {
		t.Fatal(err)
	}
	if ok, err := h.CanMetaContext(MetaContextBaseAllocation); err != nil || !ok {
		t.Fatalf("CanMetaContext(base:allocation) = %v, %v", ok, err)
	}
	type span struct {
		off, end int64
		flags    uint32
	}
	want := []span{{0, 32 << 10, 0}, {32 << 10, 1 << 20, StateHole | StateZero}, {1 << 20, 1<<20 + 32<<10, 0},
		{1<<20 + 32<<10, 4<<20 - 32<<10, StateHole | StateZero}, {4<<20 - 32<<10, 4 << 20, 0}, {4 << 20, 8 << 20, StateHole | StateZero}}
	flagsAt := func(off int64) uint32 {
		for _, s := range want {
			if off >= s.off && off < s.end {
				return s.flags
			}
		}
		t.Fatalf("offset %d outside the export", off)
		return 0
	}
	// Whole pages: the answer is the page map. Inside a page, nbdkit says "zero" for a range of
	// zero bytes, so there a ZERO descriptor must read as zeros.
	for _, r := range [][2]int64{{0, 8 << 20}, {100, 5000}, {40 << 10, 3 << 20}, {4<<20 - 1, 1}, {6 << 20, 2 << 20}} {
		aligned := r[0]%(32<<10) == 0
		for pos, end := r[0], r[0]+r[1]; pos < end; {
			st, err := h.BlockStatus(ctx, pos, end-pos)
			if err != nil {
				t.Fatalf("BlockStatus(%d, %d): %v", pos, end-pos, err)
			}
			if len(st) == 0 {
				t.Fatalf("BlockStatus(%d, %d): no descriptors", pos, end-pos)
			}
			for _, s := range st {
				last := min(pos+s.Len, 8<<20) - 1
				switch {
				case s.Len <= 0:
					t.Fatalf("BlockStatus(%d, %d): descriptor %+v", pos, end-pos, s)
				case aligned && (s.Flags != flagsAt(pos) || s.Flags != flagsAt(last)):
					t.Fatalf("BlockStatus(%d, %d): %+v at %d; the export has flags %d..%d there", r[0], r[1], s, pos, flagsAt(pos), flagsAt(last))
				case s.Flags&StateZero != 0:
					p := make([]byte, last+1-pos)
					if err := h.Pread(ctx, p, pos); err != nil {
						t.Fatal(err)
					}
					for i, b := range p {
						if b != 0 {
							t.Fatalf("BlockStatus(%d, %d): %+v at %d, but byte %d is %#x", r[0], r[1], s, pos, pos+int64(i), b)
						}
					}
				}
				pos += s.Len
			}
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := h.BlockStatus(cctx, 0, 1<<20); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("BlockStatus with a cancelled context: %v", err)
	}
	if _, err := h.BlockStatus(ctx, 8<<20, 4096); err == nil {
		t.Error("BlockStatus past the end succeeded")
	}
}

// TestBlockStatusNeedsContext: without the base:allocation context libnbd refuses the call and
// the handle stays usable.
func TestBlockStatusNeedsContext(t *testing.T) {
	sock := nbdkittest.Start(t, "data", "data=1", "size=1M")
	h := connect(t, sock)
	if _, err := h.BlockStatus(context.Background(), 0, 4096); err == nil {
		t.Fatal("BlockStatus without the meta context succeeded")
	} else {
		t.Log(err)
	}
	if err := h.Pread(context.Background(), make([]byte, 1), 0); err != nil {
		t.Fatal(err)
	}
}
