package fusefs

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/h2kvm/h2kvm/internal/testenv"
	"github.com/h2kvm/h2kvm/vfs"
)

// requireFUSE skips (or fails under H2KVM_REQUIRE_TOOLS) when FUSE mounts cannot work here.
func requireFUSE(t testing.TB) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		if os.Getenv("H2KVM_REQUIRE_TOOLS") != "" {
			t.Fatalf("FUSE: %v", err)
		}
		t.Skipf("FUSE unavailable: %v", err)
	}
	testenv.NeedTool(t, "fusermount3")
}

// mounted reports whether dir appears in /proc/mounts.
func mounted(t testing.TB, dir string) bool {
	t.Helper()
	f, err := os.Open("/proc/mounts")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if fields := strings.Fields(s.Text()); len(fields) > 1 && fields[1] == dir {
			return true
		}
	}
	return false
}

// mountTest mounts a fresh tree in a temp dir and unmounts it at the end of the test, failing
// the test if the mount is left behind.
func mountTest(t testing.TB, opt Options) *FS {
	t.Helper()
	requireFUSE(t)
	dir := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := Mount(dir, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
			_ = exec.Command("fusermount3", "-u", "-z", dir).Run()
		}
		if mounted(t, dir) {
			t.Errorf("%s still in /proc/mounts after Unmount", dir)
		}
	})
	return f
}

// diskPath returns MOUNT/name/disk.raw.
func diskPath(f *FS, name string) string { return filepath.Join(f.Dir(), name, DiskFile) }

// patterned returns a MemDevice of the given size with data, holes and zeroed ranges:
// it writes a position-dependent pattern to the listed ranges and zeroes the zero ranges.
func patterned(t testing.TB, size int64, data, zero [][2]int64) *vfs.MemDevice {
	t.Helper()
	ctx := context.Background()
	dev := vfs.NewMemDevice(size)
	for _, r := range data {
		p := make([]byte, r[1])
		for i := range p {
			pos := r[0] + int64(i)
			p[i] = byte(pos*7+pos>>9+pos>>17) | 1 // never zero: data stays distinguishable
		}
		if _, err := dev.WriteAt(ctx, p, r[0]); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range zero {
		if err := dev.Zero(ctx, r[0], r[1]); err != nil {
			t.Fatal(err)
		}
	}
	return dev
}

// contents reads a whole device directly.
func contents(t testing.TB, dev vfs.Device) []byte {
	t.Helper()
	p := make([]byte, dev.Size())
	if n, err := dev.ReadAt(context.Background(), p, 0); n != len(p) || (err != nil && !errors.Is(err, io.EOF)) {
		t.Fatalf("read device: %d bytes, %v", n, err)
	}
	return p
}

// countingDev counts the Writable calls that the FUSE layer must translate.
type countingDev struct {
	*vfs.MemDevice
	flushes, trims, zeros atomic.Int64
}

func (c *countingDev) Flush(ctx context.Context) error {
	c.flushes.Add(1)
	return c.MemDevice.Flush(ctx)
}

func (c *countingDev) Trim(ctx context.Context, off, n int64) error {
	c.trims.Add(1)
	return c.MemDevice.Trim(ctx, off, n)
}

func (c *countingDev) Zero(ctx context.Context, off, n int64) error {
	c.zeros.Add(1)
	return c.MemDevice.Zero(ctx, off, n)
}

// readOnlyDev hides the Writable methods of a device.
type readOnlyDev struct{ vfs.Device }

// failingDev fails every read with a given error.
type failingDev struct {
	vfs.Device
	err error
}

func (f failingDev) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	return 0, f.err
}

// withTimeout returns a context that ends after d, cancelled at the end of the test.
func withTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
