package daemon

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/h2kvm/h2kvm/internal/testenv"
)

// needTool: testenv.NeedTool (skip, or fail under H2KVM_REQUIRE_TOOLS).
func needTool(t testing.TB, names ...string) { t.Helper(); testenv.NeedTool(t, names...) }

// runCmd: testenv.Run (the command's standard output; the test fails on error).
func runCmd(t testing.TB, dir string, args ...string) string {
	t.Helper()
	return testenv.Run(t, dir, args...)
}

// link is one link of a test chain: its file name and the qemu-io commands applied to it.
type link struct {
	name   string
	writes []string
}

// makeChain builds a chain of monolithicSparse VMDKs with qemu-img in dir: links[0] is the base
// (created with size), each later link a child of the one before. It returns the top's path.
func makeChain(t testing.TB, dir, size string, links ...link) string {
	t.Helper()
	needTool(t, "qemu-img", "qemu-io")
	for i, l := range links {
		if i == 0 {
			runCmd(t, dir, "qemu-img", "create", "-q", "-f", "vmdk", "-o", "subformat=monolithicSparse", l.name, size)
		} else {
			runCmd(t, dir, "qemu-img", "create", "-q", "-f", "vmdk", "-b", links[i-1].name, "-F", "vmdk", l.name)
		}
		if len(l.writes) > 0 {
			args := []string{"qemu-io", "-f", "vmdk"}
			for _, w := range l.writes {
				args = append(args, "-c", w)
			}
			runCmd(t, dir, append(args, l.name)...)
		}
	}
	return filepath.Join(dir, links[len(links)-1].name)
}

// smallChain is a 3-link 8 MiB chain whose links overlap, with holes left between the writes.
func smallChain(t testing.TB, dir string) string {
	return makeChain(t, dir, "8M",
		link{"base.vmdk", []string{"write -P 0x11 0 2M", "write -P 0x12 5M 512k"}},
		link{"mid.vmdk", []string{"write -P 0x21 1M 1M", "write -P 0x22 5376k 64k"}},
		link{"top.vmdk", []string{"write -P 0x31 1536k 256k", "write -P 0x32 7M 4k"}},
	)
}

// qemuRaw returns `qemu-img convert -O raw` of file: the reference bytes of a chain.
func qemuRaw(t testing.TB, file string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "ref.raw")
	runCmd(t, "", "qemu-img", "convert", "-O", "raw", file, out)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// nbdRead copies a whole NBD export to memory with nbdcopy.
func nbdRead(t testing.TB, uri string) []byte {
	t.Helper()
	needTool(t, "nbdcopy")
	out := filepath.Join(t.TempDir(), "copy.raw")
	runCmd(t, "", "nbdcopy", uri, out)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sha256File(t testing.TB, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// sha256Files returns the digest of every file in dir.
func sha256Files(t testing.TB, dir string) map[string]string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, e := range ents {
		if e.Type().IsRegular() {
			m[e.Name()] = sha256File(t, filepath.Join(dir, e.Name()))
		}
	}
	return m
}

// firstDiff describes where two byte slices first differ.
func firstDiff(got, want []byte) string {
	if len(got) != len(want) {
		return fmt.Sprintf("length %d, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			return fmt.Sprintf("first difference at offset %d: %#x, want %#x", i, got[i], want[i])
		}
	}
	return "equal"
}

// shortDir returns a short temporary folder for unix sockets (paths are limited to 108 bytes,
// which t.TempDir's names can exceed).
func shortDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "h2d")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// testDaemon is a daemon running in-process with a control socket and an NBD socket.
type testDaemon struct {
	*Daemon
	cfg    Config
	client *http.Client
	cancel context.CancelFunc
	done   chan error
}

// testLogger logs to the test's output (only shown on failure or with -v).
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// startDaemon runs a daemon until the test ends. Empty StateDir, ControlSocket and NBDSocket
// fields are filled with fresh temporary paths.
func startDaemon(t testing.TB, cfg Config) *testDaemon {
	t.Helper()
	if cfg.StateDir == "" {
		cfg.StateDir = t.TempDir()
	}
	if cfg.ControlSocket == "" || cfg.NBDSocket == "" {
		sd := shortDir(t)
		if cfg.ControlSocket == "" {
			cfg.ControlSocket = filepath.Join(sd, "ctl.sock")
		}
		if cfg.NBDSocket == "" {
			cfg.NBDSocket = filepath.Join(sd, "nbd.sock")
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	d, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	td := &testDaemon{Daemon: d, cfg: cfg, cancel: cancel, done: make(chan error, 1)}
	sock := cfg.ControlSocket
	td.client = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}, Timeout: 2 * time.Minute}
	go func() { td.done <- d.Run(ctx) }()
	t.Cleanup(func() { td.stop(t) })
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, _ := td.tryDo("GET", "/v1/ready", nil)
		if st == http.StatusOK {
			return td
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon not ready after 10s (last status %d)", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stop ends Run and waits for it; idempotent.
func (td *testDaemon) stop(t testing.TB) {
	t.Helper()
	if td.cancel == nil {
		return
	}
	td.cancel()
	td.cancel = nil
	select {
	case err := <-td.done:
		if err != nil {
			t.Errorf("daemon Run: %v", err)
		}
	case <-time.After(time.Minute):
		t.Errorf("daemon did not stop within a minute")
	}
	td.client.CloseIdleConnections()
}

func (td *testDaemon) tryDo(method, path string, body any) (int, []byte) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(method, "http://h2kvm"+path, rd)
	resp, err := td.client.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// do sends a control request; body is a JSON value or, as a string, a raw body.
func (td *testDaemon) do(t testing.TB, method, path string, body any) (int, []byte) {
	t.Helper()
	st, b := td.tryDo(method, path, body)
	if st == 0 {
		t.Fatalf("%s %s: %s", method, path, b)
	}
	return st, b
}

// create creates an export through the control API and fails the test unless it is created.
func (td *testDaemon) create(t testing.TB, spec ExportSpec) ExportInfo {
	t.Helper()
	st, b := td.do(t, "POST", "/v1/exports", spec)
	if st != http.StatusCreated {
		t.Fatalf("create %+v: status %d: %s", spec, st, b)
	}
	var info ExportInfo
	if err := json.Unmarshal(b, &info); err != nil {
		t.Fatalf("create: %v: %s", err, b)
	}
	return info
}

// export fetches one export's description.
func (td *testDaemon) export(t testing.TB, name string) ExportInfo {
	t.Helper()
	st, b := td.do(t, "GET", "/v1/exports/"+name, nil)
	if st != http.StatusOK {
		t.Fatalf("get %s: status %d: %s", name, st, b)
	}
	var info ExportInfo
	if err := json.Unmarshal(b, &info); err != nil {
		t.Fatalf("get %s: %v: %s", name, err, b)
	}
	return info
}

// uri is the NBD URI of an export.
func (td *testDaemon) uri(name string) string {
	return "nbd+unix:///" + name + "?socket=" + td.cfg.NBDSocket
}

// qemuIO runs qemu-io commands on an NBD URI as a raw image and returns the output. It opens
// the image read-only unless a command writes.
func qemuIO(t testing.TB, uri string, cmds ...string) string {
	t.Helper()
	args := []string{"qemu-io", "-f", "raw"}
	ro := true
	for _, c := range cmds {
		if !strings.HasPrefix(c, "read") {
			ro = false
		}
	}
	if ro {
		args = append(args, "-r")
	}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	out := runCmd(t, "", append(args, uri)...)
	// qemu-io reports failed commands on stdout and still exits 0 in some versions.
	for _, bad := range []string{"Pattern verification failed", "failed:", "error"} {
		if strings.Contains(out, bad) {
			t.Fatalf("qemu-io %v: %s", cmds, out)
		}
	}
	return out
}

// apiErr decodes a JSON error body and fails the test if it is not one.
func apiErr(t testing.TB, body []byte) string {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
		t.Fatalf("error body is not {\"error\": ...}: %v: %q", err, body)
	}
	return e.Error
}

var errTimeout = errors.New("timed out")

// waitFor polls cond every 10 ms until it holds or d passes.
func waitFor(d time.Duration, cond func() bool) error {
	end := time.Now().Add(d)
	for !cond() {
		if time.Now().After(end) {
			return errTimeout
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// runQemuIO runs qemu-io commands read-write on an NBD URI and returns an error when qemu-io
// fails or reports a failed command.
func runQemuIO(uri string, cmds ...string) (string, error) {
	args := []string{"-f", "raw"}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	out, err := exec.Command("qemu-io", append(args, uri)...).CombinedOutput()
	if err == nil && (bytes.Contains(out, []byte("failed")) || bytes.Contains(out, []byte("error"))) {
		err = fmt.Errorf("qemu-io: %s", out)
	}
	return string(out), err
}
