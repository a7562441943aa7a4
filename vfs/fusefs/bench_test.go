package fusefs

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"testing"

	"github.com/h2kvm/h2kvm/internal/testenv"
	"github.com/h2kvm/h2kvm/vfs"
)

// BenchmarkSequentialRead reads a 256 MiB fully allocated MemDevice from start to end in 1 MiB
// reads (dd bs=1M), directly (the peer) and through FUSE:
//
//	direct-readat     dev.ReadAt loop, no kernel
//	fuse-directio     writable export (FOPEN_DIRECT_IO): every read is one FUSE request
//	fuse-cached-cold  read-only export added fresh per pass: kernel readahead, empty page cache
//	fuse-cached-warm  read-only export read before: served from the kernel page cache
//
// Run: go test -run=^$ -bench=SequentialRead -benchtime=3x ./vfs/fusefs/
func BenchmarkSequentialRead(b *testing.B) {
	const size = 256 << 20
	const chunk = 1 << 20
	dev := vfs.NewMemDevice(size)
	p := make([]byte, chunk)
	for off := int64(0); off < size; off += chunk {
		for i := range p {
			p[i] = byte(off>>20) ^ byte(i)
		}
		if _, err := dev.WriteAt(context.Background(), p, off); err != nil {
			b.Fatal(err)
		}
	}
	f := mountTest(b, Options{})
	if err := f.Add("rw", dev, false); err != nil {
		b.Fatal(err)
	}
	if err := f.Add("warm", dev, true); err != nil {
		b.Fatal(err)
	}
	// The reader is dd in its own process, as qemu-img or a forensic tool would be. (A Go reader
	// in this process sees its 1 MiB reads split by the kernel into 8 KiB FUSE requests.)
	testenv.NeedTool(b, "dd")
	readFile := func(b *testing.B, path string) {
		out, err := exec.Command("dd", "if="+path, "of=/dev/null", "bs=1M").CombinedOutput()
		if err != nil || !strings.Contains(string(out), fmt.Sprintf("%d bytes", size)) {
			b.Fatalf("dd: %v: %s", err, out)
		}
	}

	b.Run("direct-readat", func(b *testing.B) {
		b.SetBytes(size)
		buf := make([]byte, chunk)
		for b.Loop() {
			for off := int64(0); off < size; off += chunk {
				if _, err := dev.ReadAt(context.Background(), buf, off); err != nil && err != io.EOF {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("fuse-directio", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			readFile(b, diskPath(f, "rw"))
		}
	})
	b.Run("fuse-cached-cold", func(b *testing.B) {
		b.SetBytes(size)
		i := 0
		for b.Loop() {
			i++
			name := fmt.Sprintf("cold%d", i)
			if err := f.Add(name, dev, true); err != nil {
				b.Fatal(err)
			}
			readFile(b, diskPath(f, name))
			if err := f.Remove(withTimeout(b, 10e9), name); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fuse-cached-warm", func(b *testing.B) {
		b.SetBytes(size)
		readFile(b, diskPath(f, "warm"))
		for b.Loop() {
			readFile(b, diskPath(f, "warm"))
		}
	})
}
