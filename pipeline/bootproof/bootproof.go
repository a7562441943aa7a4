// Package bootproof holds the evidence checks of a boot test: a login prompt on the serial
// console and an SSH identification line through a forwarded loopback port. The VALIDATE stage
// (libvirt) and the test harness (plain QEMU) share them.
package bootproof

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"
)

// SSHBanner starts the identification line of an SSH server (RFC 4253 4.2).
const SSHBanner = "SSH-2.0-"

// LoginPrompt is what a getty prints on the serial console once the guest is up.
const LoginPrompt = "login:"

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("bootproof: pick a port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ReadBanner connects to 127.0.0.1:port and returns the SSH identification line, or "" when
// none arrives within wait. QEMU's user networking accepts a forwarded connection even when
// nothing listens in the guest and closes it at once: only the banner proves the guest's
// network is up.
func ReadBanner(ctx context.Context, port int, wait time.Duration) string {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return ""
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetReadDeadline(dl)
	}
	return banner(bufio.NewReaderSize(c, maxLine))
}

// maxLine bounds the lines banner reads: RFC 4253 allows 255 bytes for the identification
// line; a server that sends more without a newline does not make the reader buffer it.
const maxLine = 512

// banner returns the SSH identification line among the first 16 lines of r, without its line
// end, or "". A line longer than maxLine counts as one that is not the banner.
func banner(r *bufio.Reader) string {
	for range 16 { // a server may send other lines first
		line, err := r.ReadSlice('\n')
		long := false
		for errors.Is(err, bufio.ErrBufferFull) {
			long = true
			_, err = r.ReadSlice('\n')
		}
		if !long && bytes.HasPrefix(line, []byte(SSHBanner)) {
			return strings.TrimRight(string(line), "\r\n")
		}
		if err != nil {
			return ""
		}
	}
	return ""
}

// FileHas reports whether the file at path contains s.
func FileHas(path, s string) bool {
	b, err := os.ReadFile(path)
	return err == nil && bytes.Contains(b, []byte(s))
}

// Tail returns the last n bytes of the file at path as printable text: control bytes other
// than newline and tab are dropped, carriage returns too.
func Tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return Clean(b)
}

// Clean turns console output into printable text: control sequences (ECMA-48: CSI such as
// colours and cursor moves, OSC such as window titles and hyperlinks, DCS, APC, PM, SOS and
// two-byte escapes) are dropped, and so are control bytes other than newline and tab, carriage
// returns too. Newlines are always kept, so that a stray or cut escape sequence cannot hide
// the lines after it: a newline inside a CSI or escape sequence is kept without ending it (a
// terminal executes it), one inside a string (OSC, DCS, ...) ends the string, which otherwise
// ends at BEL or ESC \.
func Clean(b []byte) string {
	s, _ := clean(b)
	return s
}

// States of clean.
const (
	inText   = iota
	inEsc    // after ESC
	inCSI    // after ESC [
	inString // in an OSC, DCS, APC, PM or SOS string
	inStrEsc // after ESC in a string
)

// clean is Clean, also returning the state it ended in.
func clean(b []byte) (string, int) {
	var sb strings.Builder
	state := inText
	for _, c := range b {
		if c == '\n' {
			sb.WriteByte(c)
			if state == inString || state == inStrEsc {
				state = inText
			}
			continue
		}
		switch state {
		case inText:
			switch {
			case c == 0x1b:
				state = inEsc
			case c == '\t' || c >= 0x20 && c < 0x7f:
				sb.WriteByte(c)
			}
		case inEsc:
			switch {
			case c == '[':
				state = inCSI
			case c == ']' || c == 'P' || c == '_' || c == '^' || c == 'X':
				state = inString
			case c == '\t':
				sb.WriteByte(c)
			case c >= 0x30 && c <= 0x7e: // the final byte; 0x20-0x2f are intermediates
				state = inText
			}
		case inCSI:
			switch {
			case c == 0x1b:
				state = inEsc
			case c == '\t':
				sb.WriteByte(c)
			case c >= 0x40 && c <= 0x7e:
				state = inText
			}
		case inString:
			switch c {
			case 0x07:
				state = inText
			case 0x1b:
				state = inStrEsc
			}
		case inStrEsc:
			switch c {
			case '\\':
				state = inText
			case 0x1b:
			default:
				state = inString
			}
		}
	}
	return sb.String(), state
}

// Wait polls until the serial log shows a login prompt and the forwarded port answers with an
// SSH banner, or ctx ends. stopped, when it returns a non-empty reason, ends the wait early (the
// guest was switched off or crashed).
func Wait(ctx context.Context, serialLog string, port int, stopped func() string) Evidence {
	start := time.Now()
	var ev Evidence
	for {
		if !ev.LoginPrompt && FileHas(serialLog, LoginPrompt) {
			ev.LoginPrompt = true
			ev.LoginAfter = time.Since(start)
		}
		if ev.SSHBanner == "" {
			if b := ReadBanner(ctx, port, 3*time.Second); b != "" {
				ev.SSHBanner = b
				ev.SSHAfter = time.Since(start)
			}
		}
		if ev.LoginPrompt && ev.SSHBanner != "" {
			break
		}
		if stopped != nil {
			if why := stopped(); why != "" {
				ev.Stopped = why
				break
			}
		}
		select {
		case <-ctx.Done():
			ev.Stopped = "timed out"
		case <-time.After(time.Second):
			continue
		}
		break
	}
	ev.SerialTail = Tail(serialLog, 2048)
	return ev
}

// Evidence is what a boot test saw.
type Evidence struct {
	LoginPrompt bool          `json:"login_prompt"`
	LoginAfter  time.Duration `json:"login_after_ns,omitempty"`
	SSHBanner   string        `json:"ssh_banner,omitempty"`
	SSHAfter    time.Duration `json:"ssh_after_ns,omitempty"`
	// Stopped says why the wait ended without both proofs ("timed out", "guest shut off").
	Stopped    string `json:"stopped,omitempty"`
	SerialTail string `json:"serial_tail,omitempty"`
}

// OK reports whether the guest booted (login prompt) and reached the network (SSH banner).
func (e Evidence) OK() bool { return e.LoginPrompt && e.SSHBanner != "" }
