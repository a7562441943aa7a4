package nbdserve

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/h2kvm/h2kvm/vfs"
)

// run runs a command with a timeout and returns its stdout; a failure ends the test.
func run(t testing.TB, timeout time.Duration, name string, args ...string) string {
	t.Helper()
	out, err := runErr(timeout, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

func runErr(timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String() + stderr.String(), err
	}
	return stdout.String(), nil
}

// testServer is a server on a unix socket in a temporary folder.
type testServer struct {
	*Server
	sock string
}

func (ts *testServer) uri(export string) string {
	return "nbd+unix:///" + export + "?socket=" + ts.sock
}

func (ts *testServer) dial(t testing.TB) net.Conn {
	t.Helper()
	c, err := net.Dial("unix", ts.sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func startServer(t testing.TB, opt Options) *testServer {
	t.Helper()
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		if testing.Verbose() {
			opt.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
		}
	}
	s := New(opt)
	sock := filepath.Join(t.TempDir(), "nbd.sock")
	l, err := ListenUnix(sock)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(context.Background(), l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	return &testServer{Server: s, sock: sock}
}

// Layout of the standard test device (8 MiB):
//
//	[0, 1M)        data (pseudo-random)
//	[1M, 2M)       zero (Writable.Zero)
//	[2M, 4M)       hole
//	[4M, 4M+64K)   data
//	[4M+64K, 6M)   hole
//	[6M, 6M+4K)    zero
//	[6M+4K, 8M-4K) hole
//	[8M-4K, 8M)    data
const testDevSize = 8 << 20

func fillRandom(t testing.TB, d *vfs.MemDevice, off, n int64, seed uint64) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(r.Uint32())
	}
	if _, err := d.WriteAt(context.Background(), p, off); err != nil {
		t.Fatal(err)
	}
}

func newTestDevice(t testing.TB) *vfs.MemDevice {
	t.Helper()
	ctx := context.Background()
	d := vfs.NewMemDevice(testDevSize)
	fillRandom(t, d, 0, 1<<20, 1)
	if err := d.Zero(ctx, 1<<20, 1<<20); err != nil {
		t.Fatal(err)
	}
	fillRandom(t, d, 4<<20, 64<<10, 2)
	if err := d.Zero(ctx, 6<<20, 4096); err != nil {
		t.Fatal(err)
	}
	fillRandom(t, d, 8<<20-4096, 4096, 3)
	return d
}

// deviceBytes returns the whole content of a device.
func deviceBytes(t testing.TB, d vfs.Device) []byte {
	t.Helper()
	p := make([]byte, d.Size())
	if err := readFull(context.Background(), d, p, 0); err != nil {
		t.Fatal(err)
	}
	return p
}

// depthDevice reports chain depths: its extents carry Depth = depthAt(off), as a flattened
// chain would (a non-chain MemDevice always says 0).
type depthDevice struct {
	*vfs.MemDevice
	depthAt func(off int64) int
}

func (d depthDevice) Extents(ctx context.Context, off, length int64) ([]vfs.Extent, error) {
	exts, err := d.MemDevice.Extents(ctx, off, length)
	if err != nil {
		return nil, err
	}
	var out []vfs.Extent
	for _, x := range exts {
		// Split at 1 MiB boundaries so that each piece has one depth.
		for pos := x.Off; pos < x.End(); {
			end := min(x.End(), (pos>>20+1)<<20)
			out = append(out, vfs.Extent{Off: pos, Len: end - pos, Kind: x.Kind, Depth: d.depthAt(pos)})
			pos = end
		}
	}
	return out, nil
}
