package vmdk

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/h2kvm/h2kvm/internal/testenv"
	"github.com/h2kvm/h2kvm/vfs"
)

// BenchmarkSequentialRead reads a fully allocated 64 MiB disk front to back in 1 MiB requests,
// one at a time, and reports the throughput relative to `qemu-img bench` doing the same
// (queue depth 1) on the same file: x_qemu > 1 means faster than qemu.
func BenchmarkSequentialRead(b *testing.B) {
	const size = 64 << 20
	for _, sub := range []string{"monolithicSparse", "monolithicFlat", "streamOptimized"} {
		b.Run(sub, func(b *testing.B) {
			dir := b.TempDir()
			f := filepath.Join(dir, "d.vmdk")
			if sub == "streamOptimized" {
				raw := filepath.Join(dir, "r.raw")
				run(b, "qemu-img", "create", "-f", "raw", raw, fmt.Sprint(size))
				// Half random (incompressible), half a pattern.
				run(b, "qemu-io", "-f", "raw", "-c", "write -P 0x5a 32M 32M", raw)
				run(b, "sh", "-c", "head -c 33554432 /dev/urandom | dd of="+raw+" conv=notrunc status=none")
				run(b, "qemu-img", "convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized", raw, f)
			} else {
				run(b, "qemu-img", "create", "-f", "vmdk", "-o", "subformat="+sub, f, fmt.Sprint(size))
				qemuIO(b, f, "write -P 0x5a 0 64M")
			}
			qemuSecs := qemuBench(b, f, size)
			ctx := context.Background()
			c, err := Open(ctx, vfs.LocalOpener{}, f, Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			p := make([]byte, 1<<20)
			b.SetBytes(size)
			b.ResetTimer()
			start := time.Now()
			for range b.N {
				for off := int64(0); off < size; off += int64(len(p)) {
					if _, err := c.ReadAt(ctx, p, off); err != nil {
						b.Fatal(err)
					}
				}
			}
			ours := time.Since(start).Seconds() / float64(b.N)
			b.ReportMetric(qemuSecs/ours, "x_qemu")
		})
	}
}

var benchTime = regexp.MustCompile(`Run completed in ([0-9.]+) seconds`)

// qemuBench returns the seconds qemu-img bench takes to read the disk in 1 MiB requests at
// queue depth 1 (best of three).
func qemuBench(b *testing.B, f string, size int64) float64 {
	best := 0.0
	for range 3 {
		out, err := exec.Command(testenv.ToolPath(b, "qemu-img"), "bench", "-f", "vmdk", "-d", "1",
			"-c", fmt.Sprint(size>>20), "-s", "1M", "-S", "1M", f).CombinedOutput()
		if err != nil {
			b.Fatalf("qemu-img bench: %v\n%s", err, out)
		}
		m := benchTime.FindSubmatch(out)
		if m == nil {
			b.Fatalf("qemu-img bench output: %s", out)
		}
		s, _ := strconv.ParseFloat(string(m[1]), 64)
		if best == 0 || s < best {
			best = s
		}
	}
	return best
}
