package vfstest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/h2kvm/h2kvm/vfs"
)

// fullReadLimit: devices up to this size are read whole; larger ones are sampled.
const fullReadLimit = 256 << 20

// TestDevice checks dev against want, the bytes it must hold (len(want) == dev.Size()).
func TestDevice(t *testing.T, dev vfs.Device, want []byte) {
	t.Helper()
	TestDeviceReader(t, dev, bytes.NewReader(want), int64(len(want)))
}

// TestDeviceReader is TestDevice for devices too large to hold in memory: ref supplies the
// expected bytes of a device of the given size (a sparse file made by `qemu-img convert -O
// raw`, say). Devices larger than 256 MiB are checked on a sample of ranges: every Data extent
// up to 64 MiB in total, the ends of every Hole and Zero extent, and random ranges.
func TestDeviceReader(t *testing.T, dev vfs.Device, ref io.ReaderAt, size int64) {
	t.Helper()
	ctx := context.Background()
	if got := dev.Size(); got != size {
		t.Fatalf("Size() = %d, want %d", got, size)
	}
	if size == 0 {
		if n, err := dev.ReadAt(ctx, make([]byte, 1), 0); n != 0 || err != io.EOF {
			t.Errorf("ReadAt on an empty device = %d, %v; want 0, io.EOF", n, err)
		}
		return
	}
	c := &checker{t: t, dev: dev, ref: ref, size: size}
	t.Run("ReadAt", func(t *testing.T) { c.t = t; c.readOffsets(ctx) })
	t.Run("ReadEdges", func(t *testing.T) { c.t = t; c.readEdges(ctx) })
	t.Run("ReadAll", func(t *testing.T) { c.t = t; c.readAll(ctx) })
	t.Run("Concurrent", func(t *testing.T) { c.t = t; c.concurrent(ctx) })
	t.Run("Extents", func(t *testing.T) { c.t = t; c.extents(ctx) })
	t.Run("Cancelled", func(t *testing.T) { c.t = t; c.cancelled() })
}

type checker struct {
	t    *testing.T
	dev  vfs.Device
	ref  io.ReaderAt
	size int64
}

// expect returns the reference bytes of [off, off+n) (n already clipped to size).
func (c *checker) expect(off int64, n int) []byte {
	c.t.Helper()
	b := make([]byte, n)
	if n == 0 {
		return b
	}
	got, err := c.ref.ReadAt(b, off)
	if got != n {
		c.t.Fatalf("reference: %d bytes at %d: got %d: %v", n, off, got, err)
	}
	return b
}

// check reads n bytes at off and checks bytes, count and error against the contract.
func (c *checker) check(ctx context.Context, off int64, n int) error {
	p := make([]byte, n)
	for i := range p {
		p[i] = 0xa5 // so a read that leaves bytes untouched is caught
	}
	got, err := c.dev.ReadAt(ctx, p, off)
	want := int(min(int64(n), max(c.size-off, 0)))
	switch {
	case got != want:
		return fmt.Errorf("ReadAt(%d bytes at %d) = %d, %v; want %d bytes", n, off, got, err, want)
	case want < n && err != io.EOF:
		return fmt.Errorf("ReadAt(%d bytes at %d) past the end: err %v, want io.EOF", n, off, err)
	case want == n && err != nil && !(err == io.EOF && off+int64(n) == c.size):
		return fmt.Errorf("ReadAt(%d bytes at %d): unexpected error %v", n, off, err)
	}
	if exp := c.expect(off, want); !bytes.Equal(p[:want], exp) {
		i := 0
		for i < want && p[i] == exp[i] {
			i++
		}
		return fmt.Errorf("ReadAt(%d bytes at %d): first difference at byte %d (device offset %d): got %#02x want %#02x",
			n, off, i, off+int64(i), p[i], exp[i])
	}
	return nil
}

func (c *checker) readOffsets(ctx context.Context) {
	s := c.size
	offs := []int64{0, 1, 511, 512, 513, 4095, 4096, 65535, 65536, 1 << 20, s / 2, s - 4096, s - 513, s - 512, s - 1}
	sizes := []int{0, 1, 7, 511, 512, 4096, 65536 + 3, 1<<20 + 5}
	rng := rand.New(rand.NewPCG(uint64(s), 1))
	for range 40 {
		offs = append(offs, rng.Int64N(s+1))
	}
	for _, off := range offs {
		if off < 0 || off >= s {
			continue
		}
		for _, n := range sizes {
			if err := c.check(ctx, off, n); err != nil {
				c.t.Fatal(err)
			}
		}
	}
}

func (c *checker) readEdges(ctx context.Context) {
	p := make([]byte, 16)
	if n, err := c.dev.ReadAt(ctx, p, c.size); n != 0 || err != io.EOF {
		c.t.Errorf("ReadAt(16 bytes at Size()) = %d, %v; want 0, io.EOF", n, err)
	}
	if n, err := c.dev.ReadAt(ctx, p, c.size+4096); n != 0 || err == nil {
		c.t.Errorf("ReadAt(16 bytes past Size()) = %d, %v; want 0 and an error", n, err)
	}
	if n, err := c.dev.ReadAt(ctx, p, -1); n != 0 || err == nil {
		c.t.Errorf("ReadAt(at -1) = %d, %v; want 0 and an error", n, err)
	}
	if c.size > 0 {
		if err := c.check(ctx, 0, int(min(c.size, 1<<20))); err != nil {
			c.t.Error(err)
		}
		if err := c.check(ctx, max(0, c.size-3000), 3000); err != nil {
			c.t.Error(err)
		}
	}
}

func (c *checker) readAll(ctx context.Context) {
	if c.size <= fullReadLimit {
		const chunk = 1<<20 + 512 // deliberately not a power of two
		for off := int64(0); off < c.size; off += chunk {
			if err := c.check(ctx, off, chunk); err != nil {
				c.t.Fatal(err)
			}
		}
		return
	}
	// Sampled: every Data extent up to a budget, plus the ends of the others.
	budget := int64(64 << 20)
	for _, e := range c.allExtents(ctx) {
		if e.Kind == vfs.Data && budget > 0 {
			n := min(e.Len, budget)
			for off := e.Off; off < e.Off+n; off += 1 << 20 {
				if err := c.check(ctx, off, int(min(1<<20, e.Off+n-off))); err != nil {
					c.t.Fatal(err)
				}
			}
			budget -= n
			continue
		}
		for _, off := range []int64{e.Off, max(e.Off, e.End()-4096)} {
			if err := c.check(ctx, off, int(min(4096, e.End()-off))); err != nil {
				c.t.Fatal(err)
			}
		}
	}
}

func (c *checker) concurrent(ctx context.Context) {
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), uint64(c.size)))
			for range 40 {
				off := rng.Int64N(c.size)
				n := 1 + rng.IntN(256<<10)
				if err := c.check(ctx, off, n); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		c.t.Error(err)
	}
}

// collect asks for the extents of [off, off+length), looping over prefixes, and checks the
// shape of the answer.
func (c *checker) collect(ctx context.Context, off, length int64) []vfs.Extent {
	c.t.Helper()
	end := min(off+length, c.size)
	var all []vfs.Extent
	for pos := off; pos < end; {
		m, err := c.dev.Extents(ctx, pos, end-pos)
		if err != nil {
			c.t.Fatalf("Extents(%d, %d): %v", pos, end-pos, err)
		}
		if len(m) == 0 {
			c.t.Fatalf("Extents(%d, %d) returned nothing", pos, end-pos)
		}
		for _, e := range m {
			switch {
			case e.Off != pos:
				c.t.Fatalf("Extents(%d, %d): extent %+v starts at %d, want %d (gap or overlap)", off, length, e, e.Off, pos)
			case e.Len <= 0:
				c.t.Fatalf("Extents(%d, %d): empty extent %+v", off, length, e)
			case e.End() > end:
				c.t.Fatalf("Extents(%d, %d): extent %+v ends past %d (not clipped)", off, length, e, end)
			case e.Kind != vfs.Data && e.Kind != vfs.Zero && e.Kind != vfs.Hole:
				c.t.Fatalf("Extents: bad kind in %+v", e)
			case e.Depth < 0:
				c.t.Fatalf("Extents: negative depth in %+v", e)
			}
			pos = e.End()
		}
		all = append(all, m...)
	}
	return all
}

func (c *checker) allExtents(ctx context.Context) []vfs.Extent {
	return c.collect(ctx, 0, c.size)
}

func (c *checker) extents(ctx context.Context) {
	all := c.allExtents(ctx)
	// Hole and Zero ranges read as zeros, through the device and in the reference.
	for _, e := range all {
		if e.Kind == vfs.Data {
			continue
		}
		for _, off := range sampleOffsets(e) {
			n := int(min(64<<10, e.End()-off))
			p := make([]byte, n)
			if _, err := c.dev.ReadAt(ctx, p, off); err != nil && err != io.EOF {
				c.t.Fatalf("ReadAt(%d bytes at %d) in %v extent: %v", n, off, e.Kind, err)
			}
			if !isZero(p) {
				c.t.Fatalf("%v extent %+v: device reads non-zero bytes at %d", e.Kind, e, off)
			}
			if !isZero(c.expect(off, n)) {
				c.t.Fatalf("%v extent %+v: reference has non-zero bytes at %d", e.Kind, e, off)
			}
		}
	}
	// Sub-ranges, including ones that run past the end, agree with the whole map.
	rng := rand.New(rand.NewPCG(uint64(c.size), 7))
	for range 30 {
		off := rng.Int64N(c.size)
		length := rng.Int64N(c.size) + 1
		sub := c.collect(ctx, off, length)
		for _, e := range sub {
			w := kindAt(all, e.Off)
			if w.Kind != e.Kind || w.Depth != e.Depth {
				c.t.Fatalf("Extents(%d, %d) says %+v; the whole-device map says %+v there", off, length, e, w)
			}
		}
	}
	if m, err := c.dev.Extents(ctx, c.size, 4096); err != nil || len(m) != 0 {
		c.t.Errorf("Extents(Size(), 4096) = %v, %v; want nothing, no error", m, err)
	}
}

func sampleOffsets(e vfs.Extent) []int64 {
	if e.Len <= 128<<10 {
		return []int64{e.Off}
	}
	return []int64{e.Off, e.Off + e.Len/2, e.End() - 64<<10}
}

func kindAt(all []vfs.Extent, off int64) vfs.Extent {
	for _, e := range all {
		if off >= e.Off && off < e.End() {
			return e
		}
	}
	return vfs.Extent{Kind: 255}
}

func isZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

func (c *checker) cancelled() {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.dev.ReadAt(ctx, make([]byte, 512), 0); !errors.Is(err, context.Canceled) {
		c.t.Errorf("ReadAt with a cancelled context: %v, want context.Canceled", err)
	}
	if _, err := c.dev.Extents(ctx, 0, c.size); !errors.Is(err, context.Canceled) {
		c.t.Errorf("Extents with a cancelled context: %v, want context.Canceled", err)
	}
}
