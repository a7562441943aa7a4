package vfstest_test

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/h2kvm/h2kvm/vfs"
	"github.com/h2kvm/h2kvm/vfs/vfstest"
)

func TestMemDevice(t *testing.T) {
	const size = 3<<20 + 4096*3
	dev := vfs.NewMemDevice(size)
	want := make([]byte, size)
	rng := rand.New(rand.NewPCG(1, 2))
	ctx := context.Background()
	for range 20 {
		off := rng.Int64N(size - 70000)
		p := make([]byte, 1+rng.IntN(70000))
		for i := range p {
			p[i] = byte(rng.Uint32())
		}
		if _, err := dev.WriteAt(ctx, p, off); err != nil {
			t.Fatal(err)
		}
		copy(want[off:], p)
	}
	if err := dev.Zero(ctx, 1<<20, 1<<20); err != nil {
		t.Fatal(err)
	}
	clear(want[1<<20 : 2<<20])
	vfstest.TestDevice(t, dev, want)
}

func TestMemDeviceEmpty(t *testing.T) {
	vfstest.TestDevice(t, vfs.NewMemDevice(0), nil)
}

func TestMemDeviceWritable(t *testing.T) {
	vfstest.TestWritable(t, func(t *testing.T, size int64) vfs.Writable { return vfs.NewMemDevice(size) })
}
