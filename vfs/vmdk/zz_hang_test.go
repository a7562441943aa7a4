package vmdk

import (
	"context"
	"math/rand/v2"
	"os"
	"testing"
	"time"
)

func TestZZHang(t *testing.T) {
	seeds := [][]byte{}
	orig, _ := os.ReadFile("/work/shared/testdata/ext2.vmdk")
	seeds = append(seeds, orig)
	raw := make([]byte, 256<<10)
	for i := range 70000 {
		raw[i] = byte(i * 31)
	}
	writeVMwareStream(t, "/tmp/s.vmdk", raw)
	s, _ := os.ReadFile("/tmp/s.vmdk")
	seeds = append(seeds, s, s[:len(s)-1536])
	rng := rand.New(rand.NewPCG(1, 3))
	for i := 0; i < 20000; i++ {
		b := append([]byte(nil), seeds[rng.IntN(len(seeds))]...)
		for k := 0; k < 1+rng.IntN(6); k++ {
			switch rng.IntN(4) {
			case 0:
				b[rng.IntN(len(b))] = byte(rng.Uint32())
			case 1:
				b[rng.IntN(min(len(b), 2048))] = byte(rng.Uint32())
			case 2:
				b = b[:rng.IntN(len(b))+1]
			case 3:
				p := rng.IntN(min(len(b), 1024))
				b[p] = 0xff
			}
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			ctx := context.Background()
			c, err := Open(ctx, memOpener{"d/disk.vmdk": b}, "d/disk.vmdk", Options{})
			if err != nil {
				return
			}
			buf := make([]byte, 256<<10)
			for _, off := range []int64{0, c.Size() / 2, c.Size() - 1000} {
				if off >= 0 {
					c.ReadAt(ctx, buf, off)
				}
			}
			pos := int64(0)
			for i := 0; i < 16 && pos < c.Size(); i++ {
				m, err := c.Extents(ctx, pos, c.Size()-pos)
				if err != nil {
					break
				}
				pos = m[len(m)-1].End()
			}
			c.Info(ctx)
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			os.WriteFile("/tmp/hang.bin", b, 0o644)
			panic("hang")
		}
	}
}
