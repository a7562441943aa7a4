package daemon

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/h2kvm/h2kvm/vfs/source"
	"github.com/h2kvm/h2kvm/vfs/source/httpsrc/httpsrctest"
	"github.com/h2kvm/h2kvm/vfs/source/retry"
)

// fileServer serves the files of a folder (and synthetic files) over loopback HTTP with real
// Range semantics, counting the body bytes it sends.
type fileServer struct {
	*httptest.Server
	dir   string
	synth map[string]io.ReaderAt // name → content of synthSize bytes
	sizes map[string]int64

	bytes, requests atomic.Int64
	mu              sync.Mutex
	log             []string // "name first-last" of each request, for diagnostics
}

func newFileServer(t testing.TB, dir string) *fileServer {
	s := &fileServer{dir: dir, synth: map[string]io.ReaderAt{}, sizes: map[string]int64{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

type countWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (c countWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n.Add(int64(n))
	return n, err
}

func (s *fileServer) serve(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	name := strings.TrimPrefix(r.URL.Path, "/")
	s.mu.Lock()
	s.log = append(s.log, name+" "+r.Header.Get("Range"))
	ra, synthetic := s.synth[name]
	size := s.sizes[name]
	s.mu.Unlock()
	cw := countWriter{w, &s.bytes}
	if synthetic {
		http.ServeContent(cw, r, name, time.Time{}, io.NewSectionReader(ra, 0, size))
		return
	}
	if strings.Contains(name, "/") || strings.HasPrefix(name, ".") {
		http.NotFound(w, r)
		return
	}
	f, err := os.Open(filepath.Join(s.dir, name))
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	// Like common servers, name the file's version by its modification time and size.
	if st, err := f.Stat(); err == nil {
		w.Header().Set("ETag", fmt.Sprintf(`"%x-%x"`, st.ModTime().UnixNano(), st.Size()))
	}
	http.ServeContent(cw, r, name, time.Time{}, f)
}

func (s *fileServer) reset() {
	s.bytes.Store(0)
	s.requests.Store(0)
	s.mu.Lock()
	s.log = nil
	s.mu.Unlock()
}

func (s *fileServer) requestLog() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.log, "\n")
}

// qemuAllocated sums the bytes `qemu-img map` reports as data in the link itself (depth 0).
func qemuAllocated(t testing.TB, file string) int64 {
	t.Helper()
	spec, _ := json.Marshal(map[string]any{"driver": "vmdk", "file": map[string]string{"driver": "file", "filename": file}, "backing": nil})
	out := runCmd(t, "", "qemu-img", "map", "--output=json", "json:"+string(spec))
	var ents []struct {
		Length int64
		Depth  int
		Data   bool
	}
	if err := json.Unmarshal([]byte(out), &ents); err != nil {
		t.Fatalf("qemu-img map: %v\n%s", err, out)
	}
	var n int64
	for _, e := range ents {
		if e.Data && e.Depth == 0 {
			n += e.Length
		}
	}
	return n
}

func fileSize(t testing.TB, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// TestRemoteLazyFetch serves a 4 GiB (virtual) 3-link chain over HTTP and checks what the
// daemon fetches for a small read, a full read and a repeated full read.
func TestRemoteLazyFetch(t *testing.T) {
	needTool(t, "nbdcopy")
	dir := t.TempDir()
	links := []link{
		// Filler first, so the grains of the middle lie deep in each file.
		{"base.vmdk", []string{"write -P 0x11 0 16M", "write -P 0x12 2047M 2M"}},
		{"mid.vmdk", []string{"write -P 0x21 64M 8M", "write -P 0x22 2G 1M"}},
		{"top.vmdk", []string{"write -P 0x31 3G 8M", "write -P 0x32 2097408k 256k"}},
	}
	top := makeChain(t, dir, "4G", links...)
	var fileBytes, mapBytes int64
	for _, l := range links {
		p := filepath.Join(dir, l.name)
		fileBytes += fileSize(t, p)
		mapBytes += qemuAllocated(t, p)
	}
	t.Logf("chain: files %d bytes, qemu-img map data %d bytes", fileBytes, mapBytes)

	srv := newFileServer(t, dir)
	td := startDaemon(t, Config{})
	td.create(t, ExportSpec{Name: "r", Source: srv.URL + "/top.vmdk", ReadOnly: true})
	opened := srv.bytes.Load()
	t.Logf("opening the export fetched %d bytes in %d requests", opened, srv.requests.Load())

	// (a) 1 MiB in the middle: the chunks holding that MiB in the links that hold it.
	srv.reset()
	uri := td.uri("r")
	qemuIO(t, uri, "read -P 0x22 2G 256k", "read -P 0x32 2097408k 256k", "read -P 0x22 2097664k 512k")
	read := srv.bytes.Load()
	t.Logf("(a) 1 MiB read at 2 GiB: %d bytes fetched in %d requests\n%s", read, srv.requests.Load(), srv.requestLog())
	if read >= 8<<20 {
		t.Errorf("(a) reading 1 MiB fetched %d bytes, want < 8 MiB", read)
	}
	// Opening needs the head (header, descriptor, grain directory and tables) of each link:
	// one 1 MiB chunk each here.
	if opened+read >= 8<<20 {
		t.Errorf("opening the export and reading 1 MiB fetched %d bytes, want < 8 MiB", opened+read)
	}
	mid := opened + read

	// (b) a full read fetches about what the files hold.
	srv.reset()
	out := filepath.Join(t.TempDir(), "full.raw")
	runCmd(t, "", "nbdcopy", uri, out)
	full := srv.bytes.Load() + mid
	ratio := float64(full) / float64(fileBytes)
	t.Logf("(b) full read: %d bytes fetched in all = %.3f x the files' %d bytes, %.3f x qemu-img map's %d data bytes",
		full, ratio, fileBytes, float64(full)/float64(mapBytes), mapBytes)
	if ratio > 1.05 {
		t.Errorf("(b) full read fetched %.3f x the files' bytes\n%s", ratio, srv.requestLog())
	}
	if o := runCmd(t, "", "qemu-img", "compare", "-f", "raw", "-F", "vmdk", out, top); !strings.Contains(o, "identical") {
		t.Fatalf("(b) nbdcopy output differs from the chain: %s", o)
	}

	// (c) a second full read fetches nothing.
	srv.reset()
	out2 := filepath.Join(t.TempDir(), "full2.raw")
	runCmd(t, "", "nbdcopy", uri, out2)
	if n := srv.bytes.Load(); n != 0 {
		t.Errorf("(c) second full read fetched %d bytes in %d requests\n%s", n, srv.requests.Load(), srv.requestLog())
	}
	if o := runCmd(t, "", "qemu-img", "compare", "-f", "raw", "-F", "vmdk", out2, top); !strings.Contains(o, "identical") {
		t.Fatalf("(c) second read differs from the chain: %s", o)
	}
	st := td.export(t, "r").Stats
	// The server also answered one 1-byte size probe per file at open.
	if st.FetchedBytes > full || st.FetchedBytes < full-16 || st.CacheHitBytes == 0 {
		t.Errorf("export stats %+v: fetched %d, the server sent %d", st, st.FetchedBytes, full)
	}
}

// pattern is synthetic disk content: each 8-byte word holds a hash of its offset.
type pattern struct{}

func (pattern) ReadAt(p []byte, off int64) (int, error) {
	var w [8]byte
	for i := 0; i < len(p); {
		o := off + int64(i)
		x := uint64(o/8) * 0x9E3779B97F4A7C15
		x ^= x >> 29
		binary.LittleEndian.PutUint64(w[:], x|1)
		n := copy(p[i:], w[o%8:])
		i += n
	}
	return len(p), nil
}

// allocatedBytes sums st_blocks of the files under dir.
func allocatedBytes(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n += fi.Sys().(*syscall.Stat_t).Blocks * 512
		}
		return nil
	})
	return n
}

// TestRemoteCacheLimit reads a 1 GiB fully allocated remote disk (96 MiB under the race
// detector) through a daemon whose cache may hold 64 MiB, sampling the cache's disk use during
// the read.
func TestRemoteCacheLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("reads 1 GiB")
	}
	needTool(t, "nbdcopy", "qemu-img")
	dir := t.TempDir()
	size := int64(1 << 30)
	if raceEnabled {
		size = 96 << 20 // still 1.5 times the cache limit
	}
	runCmd(t, dir, "qemu-img", "create", "-q", "-f", "vmdk", "-o", "subformat=monolithicFlat", "disk.vmdk", fmt.Sprint(size))
	srv := newFileServer(t, dir)
	srv.synth["disk-flat.vmdk"], srv.sizes["disk-flat.vmdk"] = pattern{}, size

	const limit, chunk = 64 << 20, 1 << 20
	td := startDaemon(t, Config{CacheLimit: limit})
	td.create(t, ExportSpec{Name: "big", Source: srv.URL + "/disk.vmdk", ReadOnly: true})

	cacheDir := filepath.Join(td.cfg.StateDir, "cache")
	var peak atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan int)
	go func() {
		n := 0
		defer func() { sampled <- n }()
		for {
			if a := allocatedBytes(cacheDir); a > peak.Load() {
				peak.Store(a)
			}
			n++
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	cmd := exec.Command("nbdcopy", td.uri("big"), "-")
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n, copyErr := io.Copy(h, pipe)
	waitErr := cmd.Wait()
	close(stop)
	samples := <-sampled
	if copyErr != nil || waitErr != nil {
		t.Fatalf("nbdcopy: %v %v %s", copyErr, waitErr, stderr.String())
	}
	want := sha256.New()
	io.Copy(want, io.NewSectionReader(pattern{}, 0, size))
	if n != size || !bytes.Equal(h.Sum(nil), want.Sum(nil)) {
		t.Fatalf("read %d bytes whose sha256 differs from the served content", n)
	}
	st := td.export(t, "big").Stats
	t.Logf("peak cache on disk %d MiB over %d samples; fetched %d MiB, cached now %d MiB, server sent %d MiB",
		peak.Load()>>20, samples, st.FetchedBytes>>20, st.CachedBytes>>20, srv.bytes.Load()>>20)
	if peak.Load() > limit+chunk {
		t.Errorf("the cache held %d bytes on disk, limit %d + one chunk", peak.Load(), limit)
	}
	if st.FetchedBytes < size {
		t.Errorf("fetched %d bytes for a %d-byte disk", st.FetchedBytes, size)
	}
}

var fastRetry = retry.Policy{Attempts: 4, BaseDelay: 5 * time.Millisecond, MaxDelay: 20 * time.Millisecond, MaxElapsed: 10 * time.Second}

// chainFiles reads the links of smallChain in dir, by name, for httpsrctest.New.
func chainFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	for _, n := range []string{"base.vmdk", "mid.vmdk", "top.vmdk"} {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		files[n] = b
	}
	return files
}

// TestRemoteFaults injects HTTP faults under the daemon: transient ones must be retried into
// the right bytes, persistent ones must fail the read, never return wrong bytes.
func TestRemoteFaults(t *testing.T) {
	needTool(t, "nbdcopy")
	dir := t.TempDir()
	top := smallChain(t, dir)
	want := qemuRaw(t, top)
	srv := httpsrctest.New(chainFiles(t, dir))
	defer srv.Close()
	srv.StallFor = 10 * time.Second
	td := startDaemon(t, Config{ChunkSize: 256 << 10,
		Source: source.Config{Retry: fastRetry, StallTimeout: 500 * time.Millisecond}})

	transient := []httpsrctest.Fault{httpsrctest.Drop, httpsrctest.Status500, httpsrctest.Status503,
		httpsrctest.ShortBody, httpsrctest.Stall, httpsrctest.Status429}
	for i, f := range transient {
		t.Run("transient-"+f.String(), func(t *testing.T) {
			name := fmt.Sprintf("t%d", i)
			srv.Inject(f, f) // the open's first requests
			td.create(t, ExportSpec{Name: name, Source: srv.FileURL("top.vmdk"), ReadOnly: true})
			srv.Inject(f, f, f) // the first data reads
			if got := nbdRead(t, td.uri(name)); !bytes.Equal(got, want) {
				t.Fatalf("bytes differ after %v faults: %s", f, firstDiff(got, want))
			}
			td.DeleteExport(context.Background(), name, true)
		})
	}

	persistent := []httpsrctest.Fault{httpsrctest.Status500, httpsrctest.Drop, httpsrctest.ShortBody,
		httpsrctest.WrongContentRange, httpsrctest.IgnoreRange, httpsrctest.Unauthorized}
	for i, f := range persistent {
		t.Run("persistent-"+f.String(), func(t *testing.T) {
			name := fmt.Sprintf("p%d", i)
			td.create(t, ExportSpec{Name: name, Source: srv.FileURL("top.vmdk"), ReadOnly: true})
			defer td.DeleteExport(context.Background(), name, true)
			srv.SetPersistent(f)
			outFile := filepath.Join(t.TempDir(), "out.raw")
			out, err := exec.Command("nbdcopy", td.uri(name), outFile).CombinedOutput()
			srv.SetPersistent(httpsrctest.None)
			got, _ := os.ReadFile(outFile)
			if err == nil {
				// Allowed only if every byte is right (IgnoreRange can be handled).
				if !bytes.Equal(got, want) {
					t.Fatalf("nbdcopy succeeded with wrong bytes under %v: %s", f, firstDiff(got, want))
				}
				t.Logf("%v: read correct bytes", f)
				return
			}
			t.Logf("%v: nbdcopy failed as it should: %s", f, bytes.TrimSpace(out))
			if info := td.export(t, name); info.Stats.NBDErrors == 0 {
				t.Errorf("no NBD error counted: %+v", info.Stats)
			}
			// Whatever was written before the failure is right (nbdcopy writes whole requests).
			for off := 0; off+4096 <= len(got); off += 4096 {
				if !bytes.Equal(got[off:off+4096], want[off:off+4096]) && !bytes.Equal(got[off:off+4096], make([]byte, 4096)) {
					t.Fatalf("wrong bytes at %d under %v", off, f)
				}
			}
			// The failure is not cached: with the server healthy again, the read succeeds.
			if got := nbdRead(t, td.uri(name)); !bytes.Equal(got, want) {
				t.Fatalf("after the fault: %s", firstDiff(got, want))
			}
		})
	}
}

// TestRemoteRestartKeepsCache: after a restart, a restored remote export reads from the cache
// it filled before, fetching nothing again.
func TestRemoteRestartKeepsCache(t *testing.T) {
	needTool(t, "nbdcopy")
	dir := t.TempDir()
	top := smallChain(t, dir)
	want := qemuRaw(t, top)
	srv := newFileServer(t, dir)
	td := startDaemon(t, Config{})
	cfg := td.cfg
	td.create(t, ExportSpec{Name: "r", Source: srv.URL + "/top.vmdk", ReadOnly: true})
	if got := nbdRead(t, td.uri("r")); !bytes.Equal(got, want) {
		t.Fatalf("first read: %s", firstDiff(got, want))
	}
	first := srv.bytes.Load()
	td.stop(t)

	srv.reset()
	td = startDaemon(t, cfg)
	if got := nbdRead(t, td.uri("r")); !bytes.Equal(got, want) {
		t.Fatalf("read after restart: %s", firstDiff(got, want))
	}
	// Opening a file over HTTP probes its size (a 1-byte range per file).
	if n := srv.bytes.Load(); n > 16 {
		t.Fatalf("read after restart fetched %d bytes (first run %d)\n%s", n, first, srv.requestLog())
	}
	// Deleting the export drops its cache files.
	if st, b := td.do(t, "DELETE", "/v1/exports/r", nil); st != http.StatusNoContent {
		t.Fatalf("delete: %d %s", st, b)
	}
	if n := allocatedBytes(filepath.Join(cfg.StateDir, "cache")); n != 0 {
		t.Fatalf("%d bytes of cache left after deleting the export", n)
	}
}

// TestDeleteDuringReads deletes a remote export while NBD reads wait on a stalled server: the
// reads fail, the daemon goes on serving other exports.
func TestDeleteDuringReads(t *testing.T) {
	needTool(t, "nbdcopy")
	dir := t.TempDir()
	top := smallChain(t, dir)
	want := qemuRaw(t, top)
	srv := httpsrctest.New(chainFiles(t, dir))
	defer srv.Close()
	srv.StallFor = 3 * time.Second
	td := startDaemon(t, Config{ChunkSize: 64 << 10, Source: source.Config{Retry: fastRetry, StallTimeout: 10 * time.Second}})
	td.create(t, ExportSpec{Name: "r", Source: srv.FileURL("top.vmdk")})
	td.create(t, ExportSpec{Name: "local", Source: top, ReadOnly: true})
	srv.SetPersistent(httpsrctest.Stall)
	cmd := exec.Command("nbdcopy", td.uri("r"), "null:")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := waitFor(10*time.Second, func() bool { return td.export(t, "r").Stats.NBDConnections > 0 && srv.Faulted() > 0 }); err != nil {
		t.Fatalf("reads did not start: %v", err)
	}
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	if st, b := td.do(t, "DELETE", "/v1/exports/r", nil); st != http.StatusNoContent {
		t.Fatalf("delete: %d %s", st, b)
	}
	t.Logf("delete took %v", time.Since(start))
	if err := cmd.Wait(); err == nil {
		t.Fatal("nbdcopy of a deleted export succeeded")
	}
	srv.SetPersistent(httpsrctest.None)
	if got := nbdRead(t, td.uri("local")); !bytes.Equal(got, want) {
		t.Fatalf("other export after the delete: %s", firstDiff(got, want))
	}
	td.create(t, ExportSpec{Name: "r", Source: srv.FileURL("top.vmdk")})
	if got := nbdRead(t, td.uri("r")); !bytes.Equal(got, want) {
		t.Fatalf("recreated export: %s", firstDiff(got, want))
	}
}
