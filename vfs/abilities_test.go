package vfs_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/h2kvm/h2kvm/vfs"
)

// readLog is a device over a MemDevice that records the ranges read.
type readLog struct {
	*vfs.MemDevice
	mu    sync.Mutex
	reads [][2]int64
}

func (d *readLog) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	d.mu.Lock()
	d.reads = append(d.reads, [2]int64{off, off + int64(len(p))})
	d.mu.Unlock()
	return d.MemDevice.ReadAt(ctx, p, off)
}

type ownPrefetch struct {
	*readLog
	asked [][2]int64
}

func (d *ownPrefetch) Prefetch(ctx context.Context, off, length int64) error {
	d.asked = append(d.asked, [2]int64{off, length})
	return nil
}

func TestReadPrefetch(t *testing.T) {
	ctx := t.Context()
	const mib = 1 << 20
	mem := vfs.NewMemDevice(8 * mib)
	// Data at [1 MiB, 3.5 MiB) and [6 MiB, 6 MiB+10), a zeroed range inside the first.
	if _, err := mem.WriteAt(ctx, make([]byte, 5*mib/2), mib); err != nil {
		t.Fatal(err)
	}
	if _, err := mem.WriteAt(ctx, []byte("0123456789"), 6*mib); err != nil {
		t.Fatal(err)
	}
	if err := mem.Zero(ctx, 2*mib, mib/2); err != nil {
		t.Fatal(err)
	}
	dev := &readLog{MemDevice: mem}
	if err := vfs.Prefetch(ctx, dev, 0, 8*mib); err != nil {
		t.Fatal(err)
	}
	var read int64
	for _, r := range dev.reads {
		if r[1]-r[0] > mib {
			t.Errorf("one read of %d bytes, more than the 1 MiB step", r[1]-r[0])
		}
		es, err := mem.Extents(ctx, r[0], r[1]-r[0])
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			if e.Kind != vfs.Data {
				t.Errorf("read [%d, %d) covers a %v extent", r[0], r[1], e.Kind)
			}
		}
		read += r[1] - r[0]
	}
	all, err := mem.Extents(ctx, 0, 8*mib)
	if err != nil {
		t.Fatal(err)
	}
	var want int64
	for _, e := range all {
		if e.Kind == vfs.Data {
			want += e.Len
		}
	}
	if want < 2*mib+10 || read != want {
		t.Errorf("prefetch read %d bytes, want the %d data bytes: %v", read, want, dev.reads)
	}
	// A part of the range only.
	dev.reads = nil
	if err := vfs.Prefetch(ctx, dev, 6*mib+4, 100); err != nil {
		t.Fatal(err)
	}
	if len(dev.reads) != 1 || dev.reads[0] != [2]int64{6*mib + 4, 6*mib + 104} {
		t.Errorf("partial prefetch read %v", dev.reads)
	}
	if err := vfs.Prefetch(ctx, dev, 8*mib-1, 2); !errors.Is(err, vfs.ErrOutOfRange) {
		t.Errorf("prefetch past the end: %v, want ErrOutOfRange", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := vfs.Prefetch(cctx, dev, 0, 8*mib); !errors.Is(err, context.Canceled) {
		t.Errorf("prefetch with a cancelled context: %v", err)
	}
	// A device with its own Prefetch is asked, not read.
	own := &ownPrefetch{readLog: &readLog{MemDevice: mem}}
	if err := vfs.Prefetch(ctx, own, 5, 7); err != nil || len(own.asked) != 1 || own.asked[0] != [2]int64{5, 7} || len(own.reads) != 0 {
		t.Errorf("Prefetcher: err %v asked %v reads %v", err, own.asked, own.reads)
	}
}

type prioSrc struct {
	vfs.Source
	got [][2]int64
}

func (s *prioSrc) Prioritize(off, length int64) { s.got = append(s.got, [2]int64{off, length}) }

func TestPrioritize(t *testing.T) {
	s := &prioSrc{}
	vfs.Prioritize(s, 10, 20)
	if len(s.got) != 1 || s.got[0] != [2]int64{10, 20} {
		t.Errorf("Prioritize reached %v", s.got)
	}
	vfs.Prioritize(struct{ vfs.Source }{}, 10, 20) // not a Prioritizer: nothing happens
}
