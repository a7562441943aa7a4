package libnbd

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/h2kvm/h2kvm/internal/libnbd/nbdkittest"
)

func randomFile(t *testing.T, n int) (string, []byte) {
	t.Helper()
	data := make([]byte, n)
	r := rand.New(rand.NewPCG(3, 4))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	p := filepath.Join(t.TempDir(), "disk.raw")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p, data
}

func connect(t *testing.T, sock string) *Handle {
	t.Helper()
	h, err := Create()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	if err := h.ConnectURI(context.Background(), "nbd+unix:///?socket="+sock); err != nil {
		t.Fatal(err)
	}
	return h
}

func TestPreadMatchesFile(t *testing.T) {
	file, data := randomFile(t, 3<<20+5)
	sock := nbdkittest.Start(t, "file", file)
	h := connect(t, sock)
	size, err := h.Size()
	if err != nil || size != int64(len(data)) {
		t.Fatalf("size %d %v", size, err)
	}
	r := rand.New(rand.NewPCG(5, 6))
	for range 50 {
		off := r.Int64N(size)
		n := int(min(int64(r.IntN(1<<20)+1), size-off))
		p := make([]byte, n)
		if err := h.Pread(context.Background(), p, off); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(p, data[off:off+int64(n)]) {
			t.Fatalf("bytes at %d differ", off)
		}
	}
	if ro, err := h.IsReadOnly(); err != nil || ro {
		t.Fatalf("read-only %v %v", ro, err)
	}
	if _, err := h.CanMultiConn(); err != nil {
		t.Fatal(err)
	}
	if err := h.Pread(context.Background(), make([]byte, 10), size-5); err == nil {
		t.Fatal("read past the end succeeded")
	} else {
		t.Log(err)
	}
	if !h.Alive() {
		t.Fatal("handle dead after a refused request")
	}
	if err := h.Shutdown(); err != nil {
		t.Fatal(err)
	}
	h.Close()
	h.Close()
	if err := h.Pread(context.Background(), make([]byte, 1), 0); err != ErrClosed {
		t.Fatalf("after close: %v", err)
	}
}

func TestConnectUnixAndTCPStyle(t *testing.T) {
	file, data := randomFile(t, 4096)
	sock := nbdkittest.Start(t, "file", file)
	h, err := Create()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := h.SetExportName(""); err != nil {
		t.Fatal(err)
	}
	if err := h.ConnectUnix(context.Background(), sock); err != nil {
		t.Fatal(err)
	}
	p := make([]byte, 4096)
	if err := h.Pread(context.Background(), p, 0); err != nil || !bytes.Equal(p, data) {
		t.Fatal(err)
	}
	h2, _ := Create()
	defer h2.Close()
	err = h2.ConnectTCP(context.Background(), "127.0.0.1", "1")
	var e *Error
	if !errors.As(err, &e) || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("want ECONNREFUSED, got %v", err)
	}
}

func TestServerErrorHasErrno(t *testing.T) {
	file, _ := randomFile(t, 1<<20)
	sock := nbdkittest.Start(t, "--filter=error", "file", file, "error=EIO", "error-pread-rate=100%")
	h := connect(t, sock)
	err := h.Pread(context.Background(), make([]byte, 512), 0)
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("want EIO, got %v", err)
	}
	if !h.Alive() {
		t.Fatal("server error killed the handle")
	}
}

func TestPreadCancelled(t *testing.T) {
	file, _ := randomFile(t, 1<<20)
	sock := nbdkittest.Start(t, "--filter=delay", "file", file, "rdelay=10")
	h := connect(t, sock)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := h.Pread(ctx, make([]byte, 512), 0)
	if err != context.DeadlineExceeded || time.Since(start) > 5*time.Second {
		t.Fatalf("got %v after %s", err, time.Since(start))
	}
	if h.Alive() {
		t.Fatal("abandoned handle still alive")
	}
}
