// Package integration holds end-to-end tests of h2kvm against real components: the h2kvm
// binary, qemu-img, qemu-io, nbdcopy, nbdkit, FUSE and libguestfs.
//
// Helpers shared by the tests of this package live here: TestMain (which builds the h2kvm
// binary once, on first use), needTool, runCmd and the daemon process helpers.
package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/h2kvm/h2kvm/internal/testenv"
)

var (
	binDir   string // temporary folder of the binary, removed by TestMain
	binOnce  sync.Once
	binPath  string
	binError error
)

func TestMain(m *testing.M) {
	var err error
	binDir, err = os.MkdirTemp("", "h2kvm-integration-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(binDir)
	os.Exit(code)
}

// h2kvmBinary builds cmd/h2kvm once (at the first test that needs it) and returns its path.
func h2kvmBinary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		binPath = filepath.Join(binDir, "h2kvm")
		cmd := exec.Command("go", "build", "-o", binPath, "github.com/h2kvm/h2kvm/cmd/h2kvm")
		if out, err := cmd.CombinedOutput(); err != nil {
			binError = fmt.Errorf("go build ./cmd/h2kvm: %v\n%s", err, out)
		}
	})
	if binError != nil {
		t.Fatal(binError)
	}
	return binPath
}

// needTool: testenv.NeedTool (skip, or fail under H2KVM_REQUIRE_TOOLS).
func needTool(t testing.TB, names ...string) { t.Helper(); testenv.NeedTool(t, names...) }

// runCmd: testenv.Run (the command's standard output; the test fails on error).
func runCmd(t testing.TB, dir string, args ...string) string {
	t.Helper()
	return testenv.Run(t, dir, args...)
}

// smallChain builds a 3-link 8 MiB chain of qemu-img VMDKs in dir and returns the top's path.
func smallChain(t testing.TB, dir string) string {
	t.Helper()
	needTool(t, "qemu-img", "qemu-io")
	links := []struct {
		name   string
		writes []string
	}{
		{"base.vmdk", []string{"write -P 0x11 0 2M", "write -P 0x12 5M 512k"}},
		{"mid.vmdk", []string{"write -P 0x21 1M 1M", "write -P 0x22 5376k 64k"}},
		{"top.vmdk", []string{"write -P 0x31 1536k 256k", "write -P 0x32 7M 4k"}},
	}
	for i, l := range links {
		if i == 0 {
			runCmd(t, dir, "qemu-img", "create", "-q", "-f", "vmdk", "-o", "subformat=monolithicSparse", l.name, "8M")
		} else {
			runCmd(t, dir, "qemu-img", "create", "-q", "-f", "vmdk", "-b", links[i-1].name, "-F", "vmdk", l.name)
		}
		args := []string{"qemu-io", "-f", "vmdk"}
		for _, w := range l.writes {
			args = append(args, "-c", w)
		}
		runCmd(t, dir, append(args, l.name)...)
	}
	return filepath.Join(dir, "top.vmdk")
}

// qemuRaw writes `qemu-img convert -O raw` of file to a temporary file and returns its path.
func qemuRaw(t testing.TB, file string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "ref.raw")
	runCmd(t, "", "qemu-img", "convert", "-O", "raw", file, out)
	return out
}

func sha256Dir(t testing.TB, dir string) string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		io.Copy(h, f)
		f.Close()
		fmt.Fprintf(&b, "%s %s\n", e.Name(), hex.EncodeToString(h.Sum(nil)))
	}
	return b.String()
}

// shortDir returns a short temporary folder for unix sockets (at most 108 bytes a path).
func shortDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "h2i")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// proc is an h2kvm process started by a test.
type proc struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan struct{}
	err    error // set when done is closed
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startH2KVM starts the binary with args; the process is killed when the test ends.
func startH2KVM(t testing.TB, stdout io.Writer, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(h2kvmBinary(t), args...), stderr: new(syncBuffer), done: make(chan struct{})}
	p.cmd.Stdout = stdout
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("h2kvm %s stderr:\n%s", strings.Join(args, " "), p.stderr.String())
		}
	})
	return p
}

// signal sends sig and waits up to a minute for the process to end; it returns the exit code.
func (p *proc) signal(t testing.TB, sig syscall.Signal) int {
	t.Helper()
	p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		t.Fatalf("h2kvm did not exit within a minute of %v\n%s", sig, p.stderr.String())
	}
	return p.cmd.ProcessState.ExitCode()
}

// controlClient talks HTTP over a unix socket.
func controlClient(sock string) *http.Client {
	return &http.Client{Timeout: time.Minute, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
}

// api sends a control request with a JSON body (nil for none) and returns status and body.
func api(t testing.TB, c *http.Client, method, path string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		j, _ := json.Marshal(body)
		rd = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(method, "http://h2kvm"+path, rd)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// waitReady polls /v1/ready until it answers 200 or the process dies.
func waitReady(t testing.TB, p *proc, c *http.Client) {
	t.Helper()
	end := time.Now().Add(30 * time.Second)
	for time.Now().Before(end) {
		select {
		case <-p.done:
			t.Fatalf("h2kvm exited: %v\n%s", p.err, p.stderr.String())
		default:
		}
		req, _ := http.NewRequest("GET", "http://h2kvm/v1/ready", nil)
		if resp, err := c.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("h2kvm not ready after 30s\n%s", p.stderr.String())
}

// waitFile waits until path exists or the process dies.
func waitFile(t testing.TB, p *proc, path string) {
	t.Helper()
	end := time.Now().Add(30 * time.Second)
	for time.Now().Before(end) {
		if _, err := os.Stat(path); err == nil {
			return
		}
		select {
		case <-p.done:
			t.Fatalf("h2kvm exited: %v\n%s", p.err, p.stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("%s did not appear within 30s\n%s", path, p.stderr.String())
}

// mounted reports whether dir is a mount point in /proc/mounts.
func mounted(t testing.TB, dir string) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/mounts")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[1] == dir {
			return true
		}
	}
	return false
}

// qemuIO runs qemu-io commands on an NBD URI as a raw image and fails the test when a command
// fails.
func qemuIO(t testing.TB, uri string, cmds ...string) string {
	t.Helper()
	args := []string{"qemu-io", "-f", "raw"}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	out := runCmd(t, "", append(args, uri)...)
	if strings.Contains(out, "failed") || strings.Contains(out, "error") {
		t.Fatalf("qemu-io %v: %s", cmds, out)
	}
	return out
}
