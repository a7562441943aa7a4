package daemon

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sync/errgroup"
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
