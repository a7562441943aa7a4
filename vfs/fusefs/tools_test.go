package fusefs

// Checks against real, independent tools: qemu-img and qemu-io (qemu's file-posix driver, which
// probes holes with SEEK_DATA/SEEK_HOLE), and libguestfs, which boots an appliance on the file.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/h2kvm/h2kvm/internal/testenv"
	"github.com/h2kvm/h2kvm/vfs"
)

// qemu-img map must see the device's data and holes, exactly where they are.
func TestQemuImgMap(t *testing.T) {
	testenv.NeedTool(t, "qemu-img")
	f := mountTest(t, Options{})
	if err := f.Add("x", testDevice(t), true); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("qemu-img", "map", "--output=json", "-f", "raw", diskPath(f, "x")).Output()
	if err != nil {
		t.Fatalf("qemu-img map: %v", err)
	}
	var entries []struct {
		Start, Length int64
		Data, Zero    bool
	}
	if err := json.Unmarshal(out, &entries); err != nil {
		t.Fatalf("qemu-img map output %s: %v", out, err)
	}
	// Merge neighbours of equal kind (qemu splits at its own boundaries).
	type span struct {
		off, end int64
		data     bool
	}
	var got []span
	for _, e := range entries {
		if e.Start >= testSize {
			continue // qemu rounds a raw image up to whole 512-byte sectors
		}
		if n := len(got); n > 0 && got[n-1].data == e.Data && got[n-1].end == e.Start {
			got[n-1].end += e.Length
			continue
		}
		got = append(got, span{e.Start, e.Start + e.Length, e.Data})
	}
	want := []span{
		{0, 68 * kib, true}, {68 * kib, mib + 8*kib, false}, {mib + 8*kib, 2 * mib, true},
		{2 * mib, 5 * mib, false}, {5 * mib, testSize, true},
	}
	if len(got) != len(want) {
		t.Fatalf("qemu-img map: %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("qemu-img map span %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}

// qemu-io writes through a writable export; the bytes must land on the device.
func TestQemuIOWrite(t *testing.T) {
	testenv.NeedTool(t, "qemu-io")
	f := mountTest(t, Options{})
	dev := vfs.NewMemDevice(4 * mib)
	if err := f.Add("w", dev, false); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("qemu-io", "-f", "raw", "-c", "write -P 0xab 65536 131072",
		"-c", "write -z 131072 4096", "-c", "flush", diskPath(f, "w")).CombinedOutput()
	if err != nil || bytes.Contains(out, []byte("error")) {
		t.Fatalf("qemu-io: %v: %s", err, out)
	}
	got := contents(t, dev)
	want := make([]byte, 4*mib)
	for i := 65536; i < 65536+131072; i++ {
		want[i] = 0xab
	}
	clear(want[131072 : 131072+4096])
	if !bytes.Equal(got, want) {
		t.Error("device bytes differ from what qemu-io wrote")
	}
}

// A process killed while its read waits on the device: the kernel sends a FUSE interrupt and
// the device sees its context cancelled. This holds for synchronous requests, so the export is
// writable (direct I/O); reads of a read-only export are mostly kernel readahead, which the
// kernel sends in the background and never interrupts.
func TestInterruptCancelsDeviceRead(t *testing.T) {
	testenv.NeedTool(t, "cat")
	f := mountTest(t, Options{})
	dev := &blockingDev{Writable: vfs.NewMemDevice(mib), entered: make(chan struct{}, 1), result: make(chan error, 1)}
	if err := f.Add("slow", dev, false); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("cat", diskPath(f, "slow"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-dev.entered:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("device read never started")
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-dev.result; !errors.Is(err, context.Canceled) {
		t.Errorf("device read ended with %v, want context.Canceled", err)
	}
	_ = cmd.Wait()
}

// blockingDev blocks its first read until the request's context ends (or 10 s pass).
type blockingDev struct {
	vfs.Writable
	entered chan struct{}
	result  chan error
}

func (b *blockingDev) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	select {
	case b.entered <- struct{}{}:
	default:
		return b.Writable.ReadAt(ctx, p, off)
	}
	var err error
	select {
	case <-ctx.Done():
		err = ctx.Err()
	case <-time.After(10 * time.Second):
		err = errors.New("context not cancelled within 10s")
	}
	b.result <- err
	return 0, err
}

// libguestfs finds the ext4 file system of a disk image served from a MemDevice.
func TestGuestfishListFilesystems(t *testing.T) {
	if testing.Short() {
		t.Skip("boots the libguestfs appliance")
	}
	testenv.NeedTool(t, "guestfish", "qemu-img", "mkfs.ext4")
	img := filepath.Join(t.TempDir(), "ext4.raw")
	for _, args := range [][]string{
		{"qemu-img", "create", "-q", "-f", "raw", img, "16M"},
		{"mkfs.ext4", "-F", "-q", "-L", "h2kvmtest", img},
	} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	raw, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	dev := vfs.NewMemDevice(int64(len(raw)))
	zero := make([]byte, vfs.MemBlockSize)
	for off := 0; off < len(raw); off += vfs.MemBlockSize {
		if blk := raw[off:min(off+vfs.MemBlockSize, len(raw))]; !bytes.Equal(blk, zero[:len(blk)]) {
			if _, err := dev.WriteAt(context.Background(), blk, int64(off)); err != nil {
				t.Fatal(err)
			}
		}
	}
	f := mountTest(t, Options{})
	if err := f.Add("guest", dev, true); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "guestfish", "--ro", "--format=raw", "-a", diskPath(f, "guest"),
		"run", ":", "list-filesystems", ":", "vfs-label", "/dev/sda")
	cmd.Env = append(os.Environ(), "LIBGUESTFS_BACKEND=direct", "LIBGUESTFS_BACKEND_SETTINGS=force_tcg")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("guestfish: %v: %s", err, out)
	}
	if s := string(out); !strings.Contains(s, "/dev/sda: ext4") || !strings.Contains(s, "h2kvmtest") {
		t.Errorf("guestfish output %q, want /dev/sda: ext4 labelled h2kvmtest", s)
	}
}
