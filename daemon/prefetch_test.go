package daemon

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/h2kvm/h2kvm/internal/libnbd"
)

// TestRemotePrefetch: NBD_CMD_CACHE from a real libnbd client over a whole remote chain fetches
// about what the files hold, and a full read after it fetches nothing more.
func TestRemotePrefetch(t *testing.T) {
	needTool(t, "nbdcopy")
	dir := t.TempDir()
	links := []link{
		{"base.vmdk", []string{"write -P 0x11 0 6M", "write -P 0x12 200M 2M"}},
		{"top.vmdk", []string{"write -P 0x21 4M 4M", "write -P 0x22 300M 1M"}},
	}
	top := makeChain(t, dir, "512M", links...)
	var fileBytes int64
	for _, l := range links {
		fileBytes += fileSize(t, filepath.Join(dir, l.name))
	}
	srv := newFileServer(t, dir)
	for _, writable := range []bool{false, true} {
		name := map[bool]string{false: "ro", true: "rw"}[writable]
		t.Run(name, func(t *testing.T) {
			td := startDaemon(t, Config{})
			srv.reset()
			td.create(t, ExportSpec{Name: name, Source: srv.URL + "/top.vmdk", ReadOnly: !writable})
			h, err := libnbd.Create()
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			if err := h.ConnectURI(t.Context(), td.uri(name)); err != nil {
				t.Fatal(err)
			}
			if ok, err := h.CanCache(); err != nil || !ok {
				t.Fatalf("can_cache = %v, %v", ok, err)
			}
			size, err := h.Size()
			if err != nil {
				t.Fatal(err)
			}
			// In pieces, as a client streaming a disk in would ask.
			for off := int64(0); off < size; off += 64 << 20 {
				if err := h.Cache(t.Context(), off, min(64<<20, size-off)); err != nil {
					t.Fatalf("cache at %d: %v", off, err)
				}
			}
			cached := srv.bytes.Load()
			ratio := float64(cached) / float64(fileBytes)
			t.Logf("open + CACHE of the whole disk fetched %d bytes = %.3f x the files' %d bytes", cached, ratio, fileBytes)
			if ratio < 0.9 || ratio > 1.05 {
				t.Errorf("prefetch fetched %.3f x the files' bytes, want about 1\n%s", ratio, srv.requestLog())
			}
			srv.reset()
			out := filepath.Join(t.TempDir(), "full.raw")
			runCmd(t, "", "nbdcopy", td.uri(name), out)
			if n := srv.bytes.Load(); n != 0 {
				t.Errorf("a full read after CACHE fetched %d bytes\n%s", n, srv.requestLog())
			}
			if o := runCmd(t, "", "qemu-img", "compare", "-f", "raw", "-F", "vmdk", out, top); !strings.Contains(o, "identical") {
				t.Fatalf("read after prefetch differs from the chain: %s", o)
			}
		})
	}
}
