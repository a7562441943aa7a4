package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sync/errgroup"

	"github.com/h2kvm/h2kvm/store"
	"github.com/h2kvm/h2kvm/vfs"
	"github.com/h2kvm/h2kvm/vfs/cache"
)

// TestSharedFilesConcurrent creates, reads and deletes many exports at once whose chains share
// files (a common base, linked clones, the same source twice): every export reads one cache per
// file, and every byte read equals `qemu-img convert -O raw` of its chain.
func TestSharedFilesConcurrent(t *testing.T) {
	needTool(t, "nbdcopy", "qemu-img", "qemu-io")
	dir := t.TempDir()
	makeChain(t, dir, "8M",
		link{"base.vmdk", []string{"write -P 0x11 0 3M", "write -P 0x12 4M 2M", "write -P 0x13 7M 1M"}},
		link{"mid.vmdk", []string{"write -P 0x21 1M 1M", "write -P 0x22 6M 512k"}})
	const clones = 4
	var tops []string
	var want [][]byte
	for i := range clones {
		name := fmt.Sprintf("clone%d.vmdk", i)
		parent := "base.vmdk"
		if i%2 == 1 {
			parent = "mid.vmdk"
		}
		runCmd(t, dir, "qemu-img", "create", "-q", "-f", "vmdk", "-b", parent, "-F", "vmdk", name)
		runCmd(t, dir, "qemu-io", "-f", "vmdk", "-c", fmt.Sprintf("write -P 0x%x %dk 64k", 0x40+i, 512*(i+1)), name)
		tops = append(tops, name)
		want = append(want, qemuRaw(t, filepath.Join(dir, name)))
	}
	srv := newFileServer(t, dir)
	// Small chunks and no read-ahead: more chunks in flight, fewer served from memory.
	td := startDaemon(t, Config{ChunkSize: 64 << 10})

	const workers, rounds = 8, 3
	var g errgroup.Group
	for w := range workers {
		g.Go(func() error {
			for r := range rounds {
				name := fmt.Sprintf("w%d-%d", w, r)
				c := w % clones // two workers per clone: the same source twice
				st, b := td.tryDo("POST", "/v1/exports", ExportSpec{Name: name, Source: srv.URL + "/" + tops[c], ReadOnly: true})
				if st != http.StatusCreated {
					return fmt.Errorf("create %s: %d %s", name, st, b)
				}
				got, err := nbdReadErr(td.uri(name), t.TempDir())
				if err != nil {
					return fmt.Errorf("read %s: %v", name, err)
				}
				if !bytes.Equal(got, want[c]) {
					return fmt.Errorf("export %s of %s: %s", name, tops[c], firstDiff(got, want[c]))
				}
				if st, b := td.tryDo("DELETE", "/v1/exports/"+name, nil); st != http.StatusNoContent {
					return fmt.Errorf("delete %s: %d %s", name, st, b)
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	if n := len(td.ListExports()); n != 0 {
		t.Fatalf("%d exports left", n)
	}
	if n := allocatedBytes(filepath.Join(td.cfg.StateDir, "cache")); n != 0 {
		t.Errorf("%d bytes of cache left after deleting every export", n)
	}
}

// nbdReadErr copies a whole NBD export to memory with nbdcopy, for goroutines (no t.Fatal).
func nbdReadErr(uri, tmp string) ([]byte, error) {
	out := filepath.Join(tmp, "copy.raw")
	if b, err := exec.Command("nbdcopy", uri, out).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("nbdcopy: %v: %s", err, b)
	}
	return os.ReadFile(out)
}

// TestSecondDaemonRefused: a second daemon on the state directory of a running one is refused
// with a clear error, and so is a cache opened on one of its cache files: neither resets the
// chunks the running daemon serves.
func TestSecondDaemonRefused(t *testing.T) {
	needTool(t, "nbdcopy")
	dir := t.TempDir()
	top := smallChain(t, dir)
	want := qemuRaw(t, top)
	srv := newFileServer(t, dir)
	td := startDaemon(t, Config{})
	td.create(t, ExportSpec{Name: "r", Source: srv.URL + "/top.vmdk", ReadOnly: true})
	if got := nbdRead(t, td.uri("r")); !bytes.Equal(got, want) {
		t.Fatalf("first read: %s", firstDiff(got, want))
	}

	cfg := td.cfg
	cfg.ControlSocket, cfg.NBDSocket = "", ""
	if d2, err := New(context.Background(), cfg); err == nil {
		d2.Close(context.Background())
		t.Fatal("a second daemon started on the same state directory")
	} else if !errors.Is(err, store.ErrLocked) {
		t.Fatalf("second daemon: %v, want store.ErrLocked", err)
	} else {
		t.Logf("second daemon: %v", err)
	}

	files, _ := filepath.Glob(filepath.Join(cfg.StateDir, "cache", "*.cache"))
	if len(files) == 0 {
		t.Fatal("no cache files")
	}
	src, err := vfs.OpenFile(top)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	for _, f := range files {
		c, err := cache.New(context.Background(), src, cache.Config{Path: f})
		if err == nil {
			c.Close()
			t.Errorf("a second cache opened on %s, in use by the daemon", f)
		} else if !errors.Is(err, cache.ErrLocked) {
			t.Errorf("second cache on %s: %v, want cache.ErrLocked", f, err)
		}
	}
	srv.reset()
	if got := nbdRead(t, td.uri("r")); !bytes.Equal(got, want) {
		t.Fatalf("read after the attempts: %s", firstDiff(got, want))
	}
	if n := srv.bytes.Load(); n != 0 {
		t.Errorf("read after the attempts fetched %d bytes: the cache lost chunks", n)
	}
}
