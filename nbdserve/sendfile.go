package nbdserve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"

	"github.com/h2kvm/h2kvm/vfs"
)

// part is one piece of a reply: bytes in memory, or a range of a local file.
type part struct {
	b   []byte   // memory part, when f is nil
	f   *os.File // file part: n bytes of f from off
	off int64
	n   int64
}

// planData splits the data range [off, off+n) into parts for a connection that can sendfile:
// file ranges where the device maps them, memory elsewhere (the memory parts point into buf,
// which covers the request starting at reqOff, and are filled by the caller). It returns nil
// when nothing maps to a file, and then the caller reads everything as before.
func planData(ctx context.Context, fm vfs.FileMapper, buf []byte, reqOff, off, n int64) ([]part, error) {
	var parts []part
	mapped := false
	for pos, end := off, off+n; pos < end; {
		f, fo, m, err := fm.MapFile(ctx, pos, end-pos)
		if err != nil {
			return nil, err
		}
		if m <= 0 || m > end-pos {
			return nil, fmt.Errorf("map file: %d bytes mapped at %d for a request of %d: %w", m, pos, end-pos, errBadMap)
		}
		if f != nil {
			mapped = true
			parts = append(parts, part{f: f, off: fo, n: m})
		} else if k := len(parts); k > 0 && parts[k-1].f == nil {
			p := &parts[k-1]
			p.b = p.b[:len(p.b)+int(m)]
		} else {
			parts = append(parts, part{b: buf[pos-reqOff : pos-reqOff+m], off: pos})
		}
		pos += m
	}
	if !mapped {
		return nil, nil
	}
	return parts, nil
}

var errBadMap = errors.New("device broke the MapFile contract")

// sendable returns the raw socket of nc when replies on it may use sendfile: plain TCP and
// unix sockets, not TLS.
func sendable(nc net.Conn) syscall.RawConn {
	switch nc.(type) {
	case *net.UnixConn, *net.TCPConn:
	default:
		return nil
	}
	raw, err := nc.(syscall.Conn).SyscallConn()
	if err != nil {
		return nil
	}
	return raw
}

// sendFile writes n bytes of f from off to the socket behind raw. The write deadline of the
// connection applies while the socket is full. A file shorter than off+n is an error
// (io.ErrUnexpectedEOF): by then the chunk header is out, so the caller MUST cut the
// connection.
func sendFile(raw syscall.RawConn, f *os.File, off, n int64) error {
	fraw, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	cerr := fraw.Control(func(sfd uintptr) { // holds f open while we send
		werr := raw.Write(func(dfd uintptr) bool {
			for n > 0 {
				w, err := syscall.Sendfile(int(dfd), int(sfd), &off, int(min(n, 1<<30)))
				if w > 0 {
					n -= int64(w)
				}
				switch {
				case err == syscall.EAGAIN:
					return false // wait until the socket drains
				case err == syscall.EINTR:
				case err != nil:
					serr = err
					return true
				case w == 0:
					serr = fmt.Errorf("sendfile: %s ends before offset %d: %w", f.Name(), off, io.ErrUnexpectedEOF)
					return true
				}
			}
			return true
		})
		if serr == nil {
			serr = werr
		}
	})
	if cerr != nil {
		return cerr
	}
	return serr
}
