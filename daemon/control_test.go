package daemon

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestChainExportOverNBD serves a 3-link qemu-img chain and checks the bytes against qemu-img
// and the block status against qemu-img map.
func TestChainExportOverNBD(t *testing.T) {
	needTool(t, "nbdcopy", "nbdinfo")
	dir := t.TempDir()
	top := smallChain(t, dir)
	before := sha256Files(t, dir)
	want := qemuRaw(t, top)
	td := startDaemon(t, Config{})

	ro := td.create(t, ExportSpec{Name: "chain", Source: top, ReadOnly: true})
	if ro.VirtualSize != 8<<20 {
		t.Fatalf("virtual size %d, want 8 MiB", ro.VirtualSize)
	}
	// A relative path is made absolute before it is recorded.
	wd, _ := os.Getwd()
	rel, err := filepath.Rel(wd, top)
	if err != nil {
		t.Fatal(err)
	}
	rw := td.create(t, ExportSpec{Name: "rw", Source: rel})
	if rw.Source != top {
		t.Fatalf("source recorded as %q, want %q", rw.Source, top)
	}
	for _, name := range []string{"chain", "rw"} {
		if got := nbdRead(t, td.uri(name)); !bytes.Equal(got, want) {
			t.Fatalf("export %s: nbdcopy differs from qemu-img convert: %s", name, firstDiff(got, want))
		}
	}

	// The chain as the control API describes it.
	info := td.export(t, "chain")
	if info.Chain == nil || len(info.Chain.Links) != 3 {
		t.Fatalf("chain description: %+v", info.Chain)
	}
	// nbdcopy reads only what block status calls data.
	if info.Stats.NBDBytesRead == 0 || info.Stats.NBDBytesRead > uint64(len(want)) {
		t.Errorf("stats say %d bytes read over NBD", info.Stats.NBDBytesRead)
	}
	st, b := td.do(t, "GET", "/v1/exports", nil)
	var list []ExportInfo
	if st != http.StatusOK || json.Unmarshal(b, &list) != nil || len(list) != 2 || list[0].Name != "chain" || list[1].Name != "rw" {
		t.Fatalf("list: %d %s", st, b)
	}

	// Holes where no link has data, data where qemu-img map says so; the writable export
	// passes the chain's holes through its empty overlay.
	ref := qemuDataMap(t, top, 8<<20)
	for _, name := range []string{"chain", "rw"} {
		got, holes := nbdDataMap(t, td.uri(name), 8<<20)
		if holes == 0 {
			t.Fatalf("export %s: nbdinfo --map shows no hole", name)
		}
		for i := range ref {
			if got[i] != ref[i] {
				t.Fatalf("export %s: block at %d KiB: data=%v, qemu-img map says data=%v", name, i*64, got[i], ref[i])
			}
		}
	}
	if after := sha256Files(t, dir); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("source files changed:\nbefore %v\nafter  %v", before, after)
	}
}

// qemuDataMap returns, per 64 KiB block, whether `qemu-img map` reports data in any link.
func qemuDataMap(t *testing.T, file string, size int64) []bool {
	t.Helper()
	out := runCmd(t, "", "qemu-img", "map", "--output=json", file)
	var ents []struct {
		Start, Length int64
		Data          bool
	}
	if err := json.Unmarshal([]byte(out), &ents); err != nil {
		t.Fatalf("qemu-img map: %v\n%s", err, out)
	}
	m := make([]bool, size/(64<<10))
	for _, e := range ents {
		for off := e.Start; off < e.Start+e.Length; off += 64 << 10 {
			m[off/(64<<10)] = e.Data
		}
	}
	return m
}

// nbdDataMap returns, per 64 KiB block, whether `nbdinfo --map` reports it allocated, and the
// number of hole extents.
func nbdDataMap(t *testing.T, uri string, size int64) ([]bool, int) {
	t.Helper()
	out := runCmd(t, "", "nbdinfo", "--map", uri)
	m := make([]bool, size/(64<<10))
	holes := 0
	sc := bufio.NewScanner(strings.NewReader(out))
	var end int64
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 3 {
			continue
		}
		off, err1 := strconv.ParseInt(f[0], 10, 64)
		n, err2 := strconv.ParseInt(f[1], 10, 64)
		typ, err3 := strconv.Atoi(f[2])
		if err1 != nil || err2 != nil || err3 != nil || off != end || off%(64<<10) != 0 {
			t.Fatalf("nbdinfo --map: unexpected line %q after offset %d\n%s", sc.Text(), end, out)
		}
		end = off + n
		if typ&1 != 0 {
			holes++
		}
		for o := off; o < off+n; o += 64 << 10 {
			m[o/(64<<10)] = typ&1 == 0
		}
	}
	if end != size {
		t.Fatalf("nbdinfo --map covers %d bytes, want %d\n%s", end, size, out)
	}
	return m, holes
}

// changeCID changes the CID in the descriptor embedded in a monolithicSparse file, keeping its
// length, so that children's parentCID no longer matches. (qemu writes CIDs it updates without
// zero padding, so a CID may have fewer than 8 digits.)
func changeCID(t *testing.T, file string) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	loc := regexp.MustCompile(`\nCID=([0-9a-fA-F]{1,8})\n`).FindSubmatchIndex(b)
	if loc == nil {
		t.Fatalf("%s: no CID line in %q", file, b[:min(len(b), 1024)])
	}
	const hex = "0123456789abcdef"
	for i := loc[2]; i < loc[3]; i++ {
		v := strings.IndexByte(hex, b[i]|0x20)
		b[i] = hex[(v+1)%16]
	}
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestControlAPIErrors(t *testing.T) {
	dir := t.TempDir()
	top := smallChain(t, dir)
	bad := filepath.Join(t.TempDir(), "cid")
	os.MkdirAll(bad, 0o755)
	badTop := smallChain(t, bad)
	changeCID(t, filepath.Join(bad, "base.vmdk"))

	td := startDaemon(t, Config{})
	td.create(t, ExportSpec{Name: "ok", Source: top, ReadOnly: true})

	cases := []struct {
		name, method, path string
		body               any
		status             int
		msg                string // a part of the error message
	}{
		{"bad JSON", "POST", "/v1/exports", `{"name":`, 400, "bad JSON"},
		{"not an object", "POST", "/v1/exports", `[1,2]`, 400, "bad JSON"},
		{"unknown field", "POST", "/v1/exports", `{"name":"x","source":"` + top + `","sauce":1}`, 400, "sauce"},
		{"empty name", "POST", "/v1/exports", ExportSpec{Source: top}, 400, "1 to 128"},
		{"dot dot", "POST", "/v1/exports", ExportSpec{Name: "../x", Source: top}, 400, "../x"},
		{"slash", "POST", "/v1/exports", ExportSpec{Name: "a/b", Source: top}, 400, "a/b"},
		{"dot file", "POST", "/v1/exports", ExportSpec{Name: ".hidden", Source: top}, 400, "dot"},
		{"space", "POST", "/v1/exports", ExportSpec{Name: "a b", Source: top}, 400, "only letters"},
		{"long name", "POST", "/v1/exports", ExportSpec{Name: strings.Repeat("n", 129), Source: top}, 400, "1 to 128"},
		{"missing source", "POST", "/v1/exports", ExportSpec{Name: "x"}, 400, "no source"},
		{"nonexistent source", "POST", "/v1/exports", ExportSpec{Name: "x", Source: filepath.Join(dir, "nope.vmdk")}, 422, "nope.vmdk"},
		{"not a VMDK", "POST", "/v1/exports", ExportSpec{Name: "x", Source: "/etc/hostname"}, 422, "hostname"},
		{"CID mismatch", "POST", "/v1/exports", ExportSpec{Name: "x", Source: badTop}, 422, "CID"},
		{"unknown scheme", "POST", "/v1/exports", ExportSpec{Name: "x", Source: "gopher://h/x.vmdk"}, 422, "scheme"},
		{"password in URL", "POST", "/v1/exports", ExportSpec{Name: "x", Source: "https://u:pw@127.0.0.1:1/x.vmdk"}, 422, "password"},
		{"duplicate", "POST", "/v1/exports", ExportSpec{Name: "ok", Source: top}, 409, "exists"},
		{"get unknown", "GET", "/v1/exports/nope", nil, 404, "nope"},
		{"delete unknown", "DELETE", "/v1/exports/nope", nil, 404, "nope"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st, b := td.do(t, c.method, c.path, c.body)
			if st != c.status {
				t.Fatalf("status %d, want %d: %s", st, c.status, b)
			}
			if msg := apiErr(t, b); !strings.Contains(msg, c.msg) {
				t.Fatalf("error %q does not mention %q", msg, c.msg)
			}
			if strings.Contains(string(b), "pw@") {
				t.Fatalf("error echoes a password: %s", b)
			}
		})
	}
	// Nothing of the refused requests was kept.
	if l := td.ListExports(); len(l) != 1 || l[0].Name != "ok" {
		t.Fatalf("exports after refused requests: %+v", l)
	}
	if ents, _ := os.ReadDir(filepath.Join(td.cfg.StateDir, "overlays")); len(ents) != 0 {
		t.Fatalf("overlays left by refused requests: %v", ents)
	}
	// The mismatching chain opens when asked to ignore the CIDs.
	info := td.create(t, ExportSpec{Name: "cid", Source: badTop, ReadOnly: true, IgnoreCIDMismatch: true})
	if info.VirtualSize != 8<<20 {
		t.Fatalf("CID-mismatch export: %+v", info)
	}
	if st, b := td.do(t, "DELETE", "/v1/exports/cid", nil); st != http.StatusNoContent {
		t.Fatalf("delete: %d %s", st, b)
	}
	if st, _ := td.do(t, "GET", "/v1/exports/cid", nil); st != http.StatusNotFound {
		t.Fatalf("deleted export still there: %d", st)
	}
}

// metricLine is one sample line of the Prometheus text format.
var metricLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*")*\})? (-?[0-9.eE+-]+|NaN|\+Inf|-Inf)$`)

// parseMetrics checks the Prometheus text exposition format (every sample belongs to a family
// declared by HELP and TYPE before it) and returns the samples by name and labels.
func parseMetrics(t *testing.T, text string) map[string]float64 {
	t.Helper()
	samples := map[string]float64{}
	typed := map[string]string{}
	helped := map[string]bool{}
	for i, line := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		switch {
		case strings.HasPrefix(line, "# HELP "):
			f := strings.SplitN(line, " ", 4)
			if len(f) < 4 || f[3] == "" {
				t.Fatalf("line %d: HELP without text: %q", i+1, line)
			}
			helped[f[2]] = true
		case strings.HasPrefix(line, "# TYPE "):
			f := strings.Fields(line)
			if len(f) != 4 || !map[string]bool{"counter": true, "gauge": true, "histogram": true, "summary": true, "untyped": true}[f[3]] {
				t.Fatalf("line %d: bad TYPE: %q", i+1, line)
			}
			if _, dup := typed[f[2]]; dup {
				t.Fatalf("line %d: second TYPE for %s", i+1, f[2])
			}
			typed[f[2]] = f[3]
		case strings.HasPrefix(line, "#"):
		default:
			m := metricLine.FindStringSubmatch(line)
			if m == nil {
				t.Fatalf("line %d: not a sample: %q", i+1, line)
			}
			if typed[m[1]] == "" || !helped[m[1]] {
				t.Fatalf("line %d: sample of %s before its HELP and TYPE", i+1, m[1])
			}
			if typed[m[1]] == "counter" && !strings.HasSuffix(m[1], "_total") {
				t.Errorf("counter %s does not end in _total", m[1])
			}
			v, err := strconv.ParseFloat(m[3], 64)
			if err != nil {
				t.Fatalf("line %d: value: %v", i+1, err)
			}
			key := m[1] + m[2]
			if _, dup := samples[key]; dup {
				t.Fatalf("line %d: duplicate sample %s", i+1, key)
			}
			samples[key] = v
		}
	}
	return samples
}

func TestMetricsHealthReady(t *testing.T) {
	needTool(t, "nbdcopy")
	dir := t.TempDir()
	top := smallChain(t, dir)

	// Before Run, the daemon is alive but not ready.
	d, err := New(context.Background(), Config{StateDir: t.TempDir(), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	h := d.controlHandler()
	for path, want := range map[string]int{"/v1/health": 200, "/v1/ready": 503} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if rec.Code != want || !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("%s before Run: %d %s, want %d", path, rec.Code, rec.Body, want)
		}
	}
	if err := d.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	td := startDaemon(t, Config{CacheLimit: 123 << 20})
	for _, p := range []string{"/v1/health", "/v1/ready"} {
		if st, b := td.do(t, "GET", p, nil); st != 200 || !json.Valid(b) {
			t.Fatalf("%s: %d %s", p, st, b)
		}
	}
	td.create(t, ExportSpec{Name: "a", Source: top, ReadOnly: true})
	td.create(t, ExportSpec{Name: `we.ird_name-1`, Source: top})
	nbdRead(t, td.uri("a"))
	qemuIO(t, td.uri(`we.ird_name-1`), "write -P 0x55 0 128k")

	st, b := td.do(t, "GET", "/metrics", nil)
	if st != 200 {
		t.Fatalf("metrics: %d %s", st, b)
	}
	m := parseMetrics(t, string(b))
	t.Logf("%d samples", len(m))
	checks := map[string]func(float64) bool{
		`h2kvm_exports`:                                         func(v float64) bool { return v == 2 },
		`h2kvm_cache_limit_bytes`:                               func(v float64) bool { return v == 123<<20 },
		`h2kvm_cache_used_bytes`:                                func(v float64) bool { return v == 0 }, // local files are not cached
		`h2kvm_export_nbd_read_bytes_total{export="a"}`:         func(v float64) bool { return v > 0 && v <= 8<<20 },
		`h2kvm_export_nbd_requests_total{export="a"}`:           func(v float64) bool { return v > 0 },
		`h2kvm_export_nbd_connections{export="a"}`:              func(v float64) bool { return v == 0 },
		`h2kvm_export_overlay_bytes{export="we.ird_name-1"}`:    func(v float64) bool { return v >= 128<<10 },
		`h2kvm_export_fetched_bytes_total{export="a"}`:          func(v float64) bool { return v == 0 },
		`h2kvm_export_nbd_errors_total{export="we.ird_name-1"}`: func(v float64) bool { return v == 0 },
		`h2kvm_nbd_buffered_bytes`:                              func(v float64) bool { return v == 0 }, // every client is done
		`h2kvm_nbd_buffered_bytes_peak`:                         func(v float64) bool { return v > 0 },
		`h2kvm_nbd_refused_connections_total`:                   func(v float64) bool { return v == 0 },
		`h2kvm_nbd_dropped_connections_total`:                   func(v float64) bool { return v == 0 },
	}
	for k, ok := range checks {
		v, found := m[k]
		if !found || !ok(v) {
			t.Errorf("metric %s = %v (present %v)", k, v, found)
		}
	}
}

// TestListeners: the sockets are private to the owner, NBD over TCP is loopback only, and the
// sockets are removed at shutdown.
func TestListeners(t *testing.T) {
	td := startDaemon(t, Config{NBDListen: "127.0.0.1:0"})
	for _, s := range []string{td.cfg.ControlSocket, td.cfg.NBDSocket} {
		st, err := os.Lstat(s)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode()&os.ModeSocket == 0 || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: mode %v, want a socket with 0600", s, st.Mode())
		}
	}
	td.stop(t)
	for _, s := range []string{td.cfg.ControlSocket, td.cfg.NBDSocket} {
		if _, err := os.Lstat(s); !os.IsNotExist(err) {
			t.Fatalf("%s left after shutdown: %v", s, err)
		}
	}

	for _, addr := range []string{"192.0.2.1:10809", "0.0.0.0:0", "no-port"} {
		d, err := New(context.Background(), Config{StateDir: t.TempDir(), NBDListen: addr, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		err = d.Run(context.Background())
		if err == nil || !strings.Contains(err.Error(), addr) {
			t.Fatalf("NBD on %s: %v, want an error naming the address", addr, err)
		}
		t.Logf("%s: %v", addr, err)
	}
}

// TestClient drives the control API through Client: results and error sentinels.
func TestClient(t *testing.T) {
	dir := t.TempDir()
	top := smallChain(t, dir)
	td := startDaemon(t, Config{CacheLimit: 77 << 20})
	c := NewClient(td.cfg.ControlSocket)
	ctx := context.Background()
	si, err := c.Server(ctx)
	if err != nil || si.NBDSocket != td.cfg.NBDSocket || si.CacheLimit != 77<<20 {
		t.Fatalf("server info %+v, %v", si, err)
	}
	in, err := c.CreateExport(ctx, ExportSpec{Name: "c", Source: top, ReadOnly: true})
	if err != nil || in.VirtualSize != 8<<20 {
		t.Fatalf("create: %+v, %v", in, err)
	}
	if in, err := c.GetExport(ctx, "c"); err != nil || in.Chain == nil || len(in.Chain.Links) != 3 {
		t.Fatalf("get: %+v, %v", in, err)
	}
	for _, tc := range []struct {
		err  error
		want error
	}{
		{func() error { _, err := c.CreateExport(ctx, ExportSpec{Name: "c", Source: top}); return err }(), ErrExists},
		{func() error { _, err := c.CreateExport(ctx, ExportSpec{Name: "a/b", Source: top}); return err }(), ErrBadSpec},
		{func() error {
			_, err := c.CreateExport(ctx, ExportSpec{Name: "n", Source: dir + "/nope.vmdk"})
			return err
		}(), ErrSource},
		{func() error { _, err := c.GetExport(ctx, "nope"); return err }(), ErrNoExport},
		{c.DeleteExport(ctx, "nope", false), ErrNoExport},
	} {
		if !errors.Is(tc.err, tc.want) {
			t.Errorf("got %v, want an error wrapping %v", tc.err, tc.want)
		}
	}
	if err := c.DeleteExport(ctx, "c", true); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetExport(ctx, "c"); !errors.Is(err, ErrNoExport) {
		t.Fatalf("after delete: %v", err)
	}
}
