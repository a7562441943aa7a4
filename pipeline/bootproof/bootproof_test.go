package bootproof

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"strings"
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

func TestCleanSequences(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		// systemd's status lines, and a hyperlink (OSC 8) around a unit name.
		{"[\x1b[0;32m  OK  \x1b[0m] Started \x1b]8;;file://host/usr/lib/systemd/system/ssh.service\x07ssh.service\x1b]8;;\x07.\r\n", "[  OK  ] Started ssh.service.\n"},
		{"\x1b]0;title\x1b\\host login: ", "host login: "},
		{"\x1b(B\x1b=\x1b[?25lok", "ok"},
		// A cut or stray sequence does not swallow the lines after it.
		{"\x1b]0;no end\nKernel panic - not syncing\n", "\nKernel panic - not syncing\n"},
		{"\x1b[1\n;32mlogin: ", "\nlogin: "},
	} {
		if got := Clean([]byte(tc.in)); got != tc.want {
			t.Errorf("Clean(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestBannerLongLine(t *testing.T) {
	long := strings.Repeat("x", 3*maxLine)
	for _, tc := range []struct{ in, want string }{
		{long + "\r\nSSH-2.0-OpenSSH_9.6\r\n", "SSH-2.0-OpenSSH_9.6"},
		{"SSH-2.0-" + long + "\r\n", ""},
		{"SSH-2.0-x", "SSH-2.0-x"},
		{strings.Repeat("\n", 16) + "SSH-2.0-x\n", ""},
	} {
		if got := banner(bufio.NewReaderSize(strings.NewReader(tc.in), maxLine)); got != tc.want {
			t.Errorf("banner(%.40q) = %.40q, want %q", tc.in, got, tc.want)
		}
	}
}

// FuzzClean: the text Clean makes is printable, keeps every newline, is left alone by a
// second Clean, and loses exactly the control sequences of a line: a complete sequence between
// two pieces of output disappears without touching them.
func FuzzClean(f *testing.F) {
	f.Add([]byte("\x1b[0;32m  OK  \x1b[0m] Started x\r\n\x00login: "), []byte("0;1"), []byte("title"))
	f.Add([]byte("\x1b]8;;file://x\x07unit\x1b]8;;\x1b\\\n\x1bP1$r\x1b\\"), []byte("?25"), []byte(""))
	f.Add([]byte("\x1b\x1b[\x1b]\x1b\x1b\\\x9b1m"), []byte(""), []byte("\x07"))
	f.Fuzz(func(t *testing.T, b, params, payload []byte) {
		out, state := clean(b)
		for i := 0; i < len(out); i++ {
			if c := out[i]; c != '\n' && c != '\t' && (c < 0x20 || c >= 0x7f) {
				t.Fatalf("Clean(%q) = %q holds %q", b, out, c)
			}
		}
		if strings.Count(out, "\n") != bytes.Count(b, []byte("\n")) {
			t.Fatalf("Clean(%q) = %q: newlines lost", b, out)
		}
		if again := Clean([]byte(out)); again != out {
			t.Fatalf("Clean not idempotent: %q → %q → %q", b, out, again)
		}
		if bytes.IndexByte(b, 0x1b) < 0 {
			want := strings.Map(func(r rune) rune {
				if r == '\n' || r == '\t' || r >= 0x20 && r < 0x7f {
					return r
				}
				return -1
			}, string(b))
			if out != want {
				t.Fatalf("Clean(%q) = %q, want %q", b, out, want)
			}
		}
		if state != inText {
			return
		}
		keep := func(s []byte, lo, hi byte) []byte {
			var o []byte
			for _, c := range s {
				if c >= lo && c <= hi {
					o = append(o, c)
				}
			}
			return o
		}
		final := byte('m')
		if len(params) > 0 && params[0] >= 0x40 && params[0] <= 0x7e {
			final = params[0]
		}
		for _, seq := range [][]byte{
			append(append([]byte("\x1b["), keep(params, 0x30, 0x3f)...), final),
			append(append([]byte("\x1b]"), keep(payload, 0x20, 0x7e)...), 0x07),
			append(append([]byte("\x1b]"), keep(payload, 0x20, 0x5b)...), 0x1b, '\\'),
			{0x1b, '(', 'B'},
		} {
			in := append(append(append([]byte{}, b...), seq...), b...)
			if got := Clean(in); got != out+out {
				t.Fatalf("Clean(%q) = %q, want %q", in, got, out+out)
			}
		}
	})
}

// FuzzBanner: banner returns an identification line or nothing, never more than a line, and
// finds the banner sent after any lines that are not too many or too long.
func FuzzBanner(f *testing.F) {
	f.Add([]byte("hello\r\n"), []byte("OpenSSH_9.2p1 Debian-2"))
	f.Add([]byte("SSH-1.99-x\nSSH-2.0-"), []byte(""))
	f.Fuzz(func(t *testing.T, before, version []byte) {
		got := banner(bufio.NewReaderSize(bytes.NewReader(append(before, version...)), maxLine))
		if got != "" && (!strings.HasPrefix(got, SSHBanner) || strings.ContainsRune(got, '\n') || len(got) > maxLine) {
			t.Fatalf("banner(%q) = %q", append(before, version...), got)
		}
		lines := bytes.Split(before, []byte("\n"))
		if bytes.ContainsAny(version, "\r\n") || len(version) > 200 || len(lines) > 15 || bytes.Contains(before, []byte(SSHBanner)) {
			return
		}
		for _, l := range lines {
			if len(l) >= maxLine {
				return
			}
		}
		in := append(append(append([]byte{}, before...), "\n"+SSHBanner...), version...)
		in = append(in, "\r\n"...)
		if got := banner(bufio.NewReaderSize(bytes.NewReader(in), maxLine)); got != SSHBanner+string(version) {
			t.Fatalf("banner(%q) = %q", in, got)
		}
	})
}
