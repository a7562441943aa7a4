package daemon

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// flatDisk creates a 4 MiB monolithicFlat VMDK (disk.vmdk, disk-flat.vmdk) with data in dir.
func flatDisk(t *testing.T, dir string) string {
	t.Helper()
	needTool(t, "qemu-img", "qemu-io")
	runCmd(t, dir, "qemu-img", "create", "-q", "-f", "vmdk", "-o", "subformat=monolithicFlat", "disk.vmdk", "4M")
	runCmd(t, dir, "qemu-io", "-f", "vmdk", "-c", "write -P 0x5a 0 4M", "disk.vmdk")
	return filepath.Join(dir, "disk.vmdk")
}

// rewrite overwrites n bytes of file at off with v, keeping its size, and moves its
// modification time on by a second (so even a server giving whole seconds sees a new version).
func rewrite(t *testing.T, file string, off int64, n int, v byte) {
	t.Helper()
	st, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(file, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(bytes.Repeat([]byte{v}, n), off); err != nil {
		t.Fatal(err)
	}
	f.Close()
	mt := st.ModTime().Add(time.Second)
	if err := os.Chtimes(file, mt, mt); err != nil {
		t.Fatal(err)
	}
	if st2, _ := os.Stat(file); st2.Size() != st.Size() {
		t.Fatalf("%s: size changed", file)
	}
}

// TestRemoteChangedSameSize: a remote file that changed between restarts, keeping its size, is
// read anew: the cache of the old version is not served (old and new chunks mixed).
func TestRemoteChangedSameSize(t *testing.T) {
	needTool(t, "nbdcopy")
	dir := t.TempDir()
	top := flatDisk(t, dir)
	srv := newFileServer(t, dir)
	td := startDaemon(t, Config{ChunkSize: 64 << 10})
	cfg := td.cfg
	td.create(t, ExportSpec{Name: "r", Source: srv.URL + "/disk.vmdk", ReadOnly: true})
	if got, want := nbdRead(t, td.uri("r")), qemuRaw(t, top); !bytes.Equal(got, want) {
		t.Fatalf("first read: %s", firstDiff(got, want))
	}
	td.stop(t)
	before, _ := filepath.Glob(filepath.Join(cfg.StateDir, "cache", "*.cache"))

	rewrite(t, filepath.Join(dir, "disk-flat.vmdk"), 1<<20, 64<<10, 0xa5)
	want := qemuRaw(t, top)
	td = startDaemon(t, cfg)
	if got := nbdRead(t, td.uri("r")); !bytes.Equal(got, want) {
		t.Fatalf("read after the file changed on the server: %s", firstDiff(got, want))
	}
	// The cache of the old version is gone.
	// The cache of the old version is gone: as many cache files as before.
	after, _ := filepath.Glob(filepath.Join(cfg.StateDir, "cache", "*.cache"))
	if len(after) != len(before) || len(after) == 0 {
		t.Errorf("cache files %v after the change, %v before", after, before)
	}
}

// TestKeptOverlayChainChanged: a writable export (its overlay survives restarts) is not
// restored over a chain that changed since it was created, whether a remote file's version
// or a link's CID changed; the error names what changed and the overlay is kept.
func TestKeptOverlayChainChanged(t *testing.T) {
	needTool(t, "nbdcopy")
	t.Run("remote-version", func(t *testing.T) {
		dir := t.TempDir()
		flatDisk(t, dir)
		srv := newFileServer(t, dir)
		td := startDaemon(t, Config{})
		cfg := td.cfg
		spec := ExportSpec{Name: "w", Source: srv.URL + "/disk.vmdk"}
		td.create(t, spec)
		qemuIO(t, td.uri("w"), "write -P 0xee 2M 64k", "flush")
		td.stop(t)

		rewrite(t, filepath.Join(dir, "disk-flat.vmdk"), 3<<20, 4096, 0x01)
		checkNotRestored(t, cfg, spec, "disk-flat.vmdk")
	})
	t.Run("local-cid", func(t *testing.T) {
		dir := t.TempDir()
		top := smallChain(t, dir)
		td := startDaemon(t, Config{})
		cfg := td.cfg
		spec := ExportSpec{Name: "w", Source: top}
		td.create(t, spec)
		qemuIO(t, td.uri("w"), "write -P 0xee 2M 64k", "flush")
		td.stop(t)

		// Only the CID changes (the modification time is put back).
		st, err := os.Stat(top)
		if err != nil {
			t.Fatal(err)
		}
		orig, err := os.ReadFile(top)
		if err != nil {
			t.Fatal(err)
		}
		changeCID(t, top)
		if err := os.Chtimes(top, st.ModTime(), st.ModTime()); err != nil {
			t.Fatal(err)
		}
		checkNotRestored(t, cfg, spec, "CID")

		// With the old file back, the export is restored with its writes.
		if err := os.WriteFile(top, orig, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(top, st.ModTime(), st.ModTime()); err != nil {
			t.Fatal(err)
		}
		want := qemuRaw(t, top)
		fill(want[2<<20:2<<20+64<<10], 0xee)
		td = startDaemon(t, cfg)
		if got := nbdRead(t, td.uri("w")); !bytes.Equal(got, want) {
			t.Fatalf("export restored over the old chain: %s", firstDiff(got, want))
		}
	})
}

// checkNotRestored starts a daemon on cfg and checks that spec's export is not served, that
// creating it again is refused with an error containing what, and that its overlay is kept.
func checkNotRestored(t *testing.T, cfg Config, spec ExportSpec, what string) {
	t.Helper()
	td := startDaemon(t, cfg)
	if n := len(td.ListExports()); n != 0 {
		t.Fatalf("export restored over a changed chain: %+v", td.ListExports())
	}
	st, b := td.do(t, "POST", "/v1/exports", spec)
	if st != http.StatusConflict {
		t.Fatalf("create over a changed chain: %d %s", st, b)
	}
	msg := apiErr(t, b)
	t.Logf("create over a changed chain: %s", msg)
	if !strings.Contains(msg, what) || !strings.Contains(msg, "changed") {
		t.Errorf("error %q does not say that %s changed", msg, what)
	}
	if _, err := os.Stat(filepath.Join(cfg.StateDir, "overlays", spec.Name+".overlay")); err != nil {
		t.Errorf("overlay of the unrestored export: %v", err)
	}
	td.stop(t)
}
