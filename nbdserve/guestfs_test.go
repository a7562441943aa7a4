package nbdserve

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/h2kvm/h2kvm/internal/testenv"
	"github.com/h2kvm/h2kvm/vfs"
)

// TestGuestfish starts a libguestfs appliance (about 30-60 s under TCG) on an export holding a
// small ext4 filesystem and reads a file from it.
func TestGuestfish(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a libguestfs appliance")
	}
	testenv.ToolPath(t, "guestfish")
	mkfs := testenv.ToolPath(t, "mkfs.ext4")
	dir := t.TempDir()
	content := filepath.Join(dir, "content")
	if err := os.MkdirAll(content, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(content, "hello.txt"), []byte("served by nbdserve\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "fs.img")
	run(t, time.Minute, mkfs, "-q", "-F", "-L", "nbdtest", "-d", content, img, "16M")
	raw, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	dev := vfs.NewMemDevice(int64(len(raw)))
	zero := make([]byte, vfs.MemBlockSize)
	for off := 0; off < len(raw); off += vfs.MemBlockSize {
		blk := raw[off:min(off+vfs.MemBlockSize, len(raw))]
		if bytes.Equal(blk, zero[:len(blk)]) {
			continue // keep holes
		}
		if _, err := dev.WriteAt(context.Background(), blk, int64(off)); err != nil {
			t.Fatal(err)
		}
	}
	ts := startServer(t, Options{})
	if err := ts.AddExport("fs", dev, ExportOptions{ReadOnly: true}); err != nil {
		t.Fatal(err)
	}
	t.Setenv("LIBGUESTFS_BACKEND", "direct")
	t.Setenv("LIBGUESTFS_BACKEND_SETTINGS", "force_tcg")
	out := run(t, 5*time.Minute, "guestfish", "--ro", "--format=raw", "-a", "nbd:///fs?socket="+ts.sock,
		"run", ":", "list-devices", ":", "vfs-label", "/dev/sda", ":", "mount-ro", "/dev/sda", "/", ":", "cat", "/hello.txt")
	t.Log(out)
	if want := "/dev/sda\nnbdtest\nserved by nbdserve"; strings.TrimSpace(out) != want {
		t.Errorf("guestfish output %q, want %q", out, want)
	}
	if st, _ := ts.Stats("fs"); st.BytesRead == 0 {
		t.Errorf("stats %+v", st)
	}
}
