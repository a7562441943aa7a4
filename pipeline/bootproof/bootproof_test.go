package bootproof

import (
	"context"
	"net"
	"testing"
	"time"
)

// serve accepts one connection on a loopback listener and hands it to f.
func serve(t *testing.T, f func(net.Conn)) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		f(c)
	}()
	return l.Addr().(*net.TCPAddr).Port
}

func TestReadBanner(t *testing.T) {
	ctx := context.Background()
	// RFC 4253 allows lines before the identification line.
	port := serve(t, func(c net.Conn) { c.Write([]byte("hello\r\nSSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")) })
	if got := ReadBanner(ctx, port, 3*time.Second); got != "SSH-2.0-OpenSSH_9.2p1 Debian-2" {
		t.Fatalf("banner %q", got)
	}
	// What QEMU's user networking does when nothing listens in the guest: accept, then close.
	port = serve(t, func(c net.Conn) {})
	if got := ReadBanner(ctx, port, 3*time.Second); got != "" {
		t.Fatalf("closed connection gave banner %q", got)
	}
	// A silent server: no banner within the wait.
	port = serve(t, func(c net.Conn) { time.Sleep(2 * time.Second) })
	start := time.Now()
	if got := ReadBanner(ctx, port, 500*time.Millisecond); got != "" || time.Since(start) > 2*time.Second {
		t.Fatalf("silent server: banner %q after %v", got, time.Since(start))
	}
	// Nothing listening at all.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := l.Addr().(*net.TCPAddr).Port
	l.Close()
	if got := ReadBanner(ctx, dead, time.Second); got != "" {
		t.Fatalf("closed port gave %q", got)
	}
}

func TestClean(t *testing.T) {
	in := []byte("\x1b[0;32m  OK  \x1b[0m] Started x\r\n\x00login: ")
	if got, want := Clean(in), "  OK  ] Started x\nlogin: "; got != want {
		t.Fatalf("clean = %q, want %q", got, want)
	}
}

func TestFreePort(t *testing.T) {
	p, err := FreePort()
	if err != nil || p <= 0 || p > 65535 {
		t.Fatalf("FreePort = %d, %v", p, err)
	}
}
