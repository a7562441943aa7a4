package vfstest

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/h2kvm/h2kvm/vfs"
)

// WritableSize is the size of the devices TestWritable asks for.
const WritableSize = 8 << 20

// byte states tracked by TestWritable's model
const (
	stNever    = iota // never touched: any kind that reads zero
	stData            // written since the last zero/trim: must report Data
	stZero            // zeroed in a 1 MiB-aligned Zero: must report Zero
	stZeroHole        // trimmed in a 1 MiB-aligned Trim: must report Zero or Hole
	stAny             // partially zeroed/trimmed: any kind (the bytes still must read zero)
)

// TestWritable checks a Writable. newDev returns a fresh, empty device of the given size (all
// bytes zero). A seeded random mix of WriteAt, Zero, Trim and Flush runs against it and a model;
// after it the device must read as the model (TestDevice) and report Data for written bytes,
// Zero for 1 MiB-aligned Zero ranges, and Zero or Hole for 1 MiB-aligned Trim ranges.
func TestWritable(t *testing.T, newDev func(t *testing.T, size int64) vfs.Writable) {
	t.Helper()
	ctx := context.Background()
	dev := newDev(t, WritableSize)
	if dev.Size() != WritableSize {
		t.Fatalf("Size() = %d, want %d", dev.Size(), WritableSize)
	}
	model := make([]byte, WritableSize)
	state := make([]byte, WritableSize)
	rng := rand.New(rand.NewPCG(42, 43))
	const mib = 1 << 20

	t.Run("OutOfRange", func(t *testing.T) {
		if _, err := dev.WriteAt(ctx, []byte{1, 2}, WritableSize-1); !errors.Is(err, vfs.ErrOutOfRange) {
			t.Errorf("WriteAt across the end: %v, want ErrOutOfRange", err)
		}
		if err := dev.Zero(ctx, WritableSize-512, 1024); !errors.Is(err, vfs.ErrOutOfRange) {
			t.Errorf("Zero across the end: %v, want ErrOutOfRange", err)
		}
		if err := dev.Trim(ctx, WritableSize, 512); !errors.Is(err, vfs.ErrOutOfRange) {
			t.Errorf("Trim past the end: %v, want ErrOutOfRange", err)
		}
	})

	for i := range 300 {
		switch op := rng.IntN(10); {
		case op < 6: // write
			off := rng.Int64N(WritableSize)
			n := 1 + rng.Int64N(min(256<<10, WritableSize-off))
			p := make([]byte, n)
			for j := range p {
				p[j] = byte(rng.UintN(255)) + 1 // non-zero so a lost write shows
			}
			if got, err := dev.WriteAt(ctx, p, off); got != len(p) || err != nil {
				t.Fatalf("op %d: WriteAt(%d bytes at %d) = %d, %v", i, n, off, got, err)
			}
			copy(model[off:], p)
			// A device tracks blocks of its own size (up to 1 MiB): the rest of the blocks
			// this write touches may now report Data too.
			for j := off / mib * mib; j < min((off+n+mib-1)/mib*mib, WritableSize); j++ {
				if state[j] == stZero || state[j] == stZeroHole {
					state[j] = stAny
				}
			}
			fill(state[off:off+n], stData)
		case op < 9: // zero or trim, aligned or not
			trim := op == 8
			var off, n int64
			aligned := rng.IntN(2) == 0
			if aligned {
				off = rng.Int64N(WritableSize/mib) * mib
				n = (1 + rng.Int64N((WritableSize-off)/mib)) * mib
			} else {
				off = rng.Int64N(WritableSize)
				n = 1 + rng.Int64N(min(300<<10, WritableSize-off))
			}
			var err error
			if trim {
				err = dev.Trim(ctx, off, n)
			} else {
				err = dev.Zero(ctx, off, n)
			}
			if err != nil {
				t.Fatalf("op %d: Zero/Trim(%d, %d) (trim=%v): %v", i, off, n, trim, err)
			}
			clear(model[off : off+n])
			st := byte(stAny)
			if aligned && trim {
				st = stZeroHole
			} else if aligned {
				st = stZero
			}
			fill(state[off:off+n], st)
		default:
			if err := dev.Flush(ctx); err != nil {
				t.Fatalf("op %d: Flush: %v", i, err)
			}
		}
	}
	if err := dev.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	TestDevice(t, dev, model)

	t.Run("Kinds", func(t *testing.T) {
		c := &checker{t: t, dev: dev, size: WritableSize}
		for _, e := range c.allExtents(ctx) {
			for off := e.Off; off < e.End(); off++ {
				ok := true
				switch state[off] {
				case stData:
					ok = e.Kind == vfs.Data
				case stZero:
					ok = e.Kind == vfs.Zero
				case stZeroHole:
					ok = e.Kind == vfs.Zero || e.Kind == vfs.Hole
				}
				if !ok {
					t.Fatalf("byte %d: extent %+v, but the byte was last %s", off, e, stateName(state[off]))
				}
			}
		}
	})
}

func fill(b []byte, v byte) {
	for i := range b {
		b[i] = v
	}
}

func stateName(s byte) string {
	return [...]string{"never touched", "written", "zeroed (aligned)", "trimmed (aligned)", "partly zeroed"}[s]
}
