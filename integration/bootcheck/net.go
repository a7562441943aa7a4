package bootcheck

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"
)

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("bootcheck: pick a port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// readBanner connects to 127.0.0.1:port and returns the SSH identification line, or "" when
// none arrives within wait. QEMU's user networking accepts the connection even when nothing
// listens in the guest, then closes it: only the banner proves the guest answered.
func readBanner(ctx context.Context, port int, wait time.Duration) string {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return ""
	}
	defer c.Close()
	dl, _ := ctx.Deadline()
	c.SetReadDeadline(dl)
	// RFC 4253 4.2: a server may send other lines before the identification line.
	r := bufio.NewReaderSize(c, 512)
	for i := 0; i < 16; i++ {
		line, err := r.ReadString('\n')
		if strings.HasPrefix(line, SSHBanner) {
			return strings.TrimRight(line, "\r\n")
		}
		if err != nil {
			return ""
		}
	}
	return ""
}

// serialHas reports whether the serial log contains s.
func serialHas(path, s string) bool {
	b, err := os.ReadFile(path)
	return err == nil && bytes.Contains(b, []byte(s))
}

// tailOf returns the last n bytes of a file with terminal control bytes other than newline and
// tab dropped, so that it reads well in a test log.
func tailOf(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return clean(b)
}

func clean(b []byte) string {
	var sb strings.Builder
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case c == 0x1b: // skip an ANSI escape sequence: ESC [ params final
			if i+1 < len(b) && b[i+1] == '[' {
				i += 2
				for i < len(b) && (b[i] < 0x40 || b[i] > 0x7e) {
					i++
				}
			}
		case c == '\n' || c == '\t' || (c >= 0x20 && c != 0x7f):
			sb.WriteByte(c)
		}
	}
	return sb.String()
}

// limitedBuffer keeps the first 64 KiB written to it; safe for concurrent use.
type limitedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := 64<<10 - l.buf.Len(); room > 0 {
		if len(p) > room {
			l.buf.Write(p[:room])
		} else {
			l.buf.Write(p)
		}
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.TrimSpace(l.buf.String())
}
