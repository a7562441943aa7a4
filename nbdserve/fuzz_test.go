package nbdserve

import (
	"bytes"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/h2kvm/h2kvm/vfs"
)

// FuzzParseOptions feeds untrusted option data to the INFO/GO and META_CONTEXT parsers.
func FuzzParseOptions(f *testing.F) {
	f.Add(infoData("disk", infoName, infoBlockSize))
	f.Add(metaData("disk", "base:allocation", "qemu:"))
	f.Add([]byte{0, 0, 0, 9})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		if r, err := parseInfoRequest(data); err == nil {
			if 4+len(r.name)+2+2*len(r.infos) != len(data) {
				t.Fatalf("info request %+v does not account for %d bytes", r, len(data))
			}
		}
		if r, err := parseMetaRequest(data); err == nil {
			n := 8 + len(r.name)
			for _, q := range r.queries {
				n += 4 + len(q)
			}
			if n != len(data) {
				t.Fatalf("meta request %+v does not account for %d bytes", r, len(data))
			}
			for _, list := range []bool{false, true} {
				for _, c := range matchContexts(r.queries, list) {
					if c.id != ctxBaseAllocation && c.id != ctxAllocationDepth {
						t.Fatalf("bad context %+v", c)
					}
				}
			}
		}
	})
}

// FuzzRequestHeader feeds request headers to the parser and the validator.
func FuzzRequestHeader(f *testing.F) {
	hdr := func(flags, typ uint16, off uint64, n uint32) []byte {
		b := make([]byte, requestSize)
		binary.BigEndian.PutUint32(b, magicRequest)
		binary.BigEndian.PutUint16(b[4:], flags)
		binary.BigEndian.PutUint16(b[6:], typ)
		binary.BigEndian.PutUint64(b[16:], off)
		binary.BigEndian.PutUint32(b[24:], n)
		return b
	}
	f.Add(hdr(0, cmdRead, 0, 4096), false)
	f.Add(hdr(cmdFlagFUA, cmdWrite, 1<<20-1, 2), true)
	f.Add(hdr(cmdFlagReqOne, cmdBlockStatus, 0, 0), true)
	f.Add(hdr(0xffff, 0xffff, ^uint64(0), ^uint32(0)), false)
	e := &export{name: "x", dev: vfs.NewMemDevice(1 << 20)}
	w := &export{name: "w", dev: vfs.NewMemDevice(1 << 20), w: vfs.NewMemDevice(1 << 20)}
	f.Fuzz(func(t *testing.T, b []byte, structured bool) {
		req, err := parseRequest(b)
		if err != nil {
			return
		}
		c := &conn{st: negotiation{structured: structured, meta: knownContexts}}
		for _, ex := range []*export{e, w} {
			errno, msg := c.check(ex, req)
			if errno != 0 && msg == "" {
				t.Fatal("error without message")
			}
			if errno == 0 && req.typ != cmdFlush {
				size := uint64(ex.dev.Size())
				if req.off > size || req.off+uint64(req.length) > size {
					t.Fatalf("accepted out of range request %+v", req)
				}
				if (req.typ == cmdRead || req.typ == cmdWrite) && req.length > MaxPayload {
					t.Fatalf("accepted oversized request %+v", req)
				}
			}
		}
	})
}

// fuzzConn is a net.Conn that reads a fixed byte string and discards writes.
type fuzzConn struct {
	r io.Reader
}

func (c *fuzzConn) Read(p []byte) (int, error)         { return c.r.Read(p) }
func (c *fuzzConn) Write(p []byte) (int, error)        { return len(p), nil }
func (c *fuzzConn) Close() error                       { return nil }
func (c *fuzzConn) LocalAddr() net.Addr                { return &net.UnixAddr{Name: "fuzz", Net: "unix"} }
func (c *fuzzConn) RemoteAddr() net.Addr               { return &net.UnixAddr{Name: "fuzz", Net: "unix"} }
func (c *fuzzConn) SetDeadline(t time.Time) error      { return nil }
func (c *fuzzConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *fuzzConn) SetWriteDeadline(t time.Time) error { return nil }

// FuzzHandshake runs the whole option haggling on arbitrary client bytes.
func FuzzHandshake(f *testing.F) {
	opt := func(o uint32, data []byte) []byte {
		b := binary.BigEndian.AppendUint64(nil, magicOpt)
		b = binary.BigEndian.AppendUint32(b, o)
		b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
		return append(b, data...)
	}
	flags := []byte{0, 0, 0, 3}
	f.Add(append(append(append(flags, opt(optStructuredReply, nil)...), opt(optSetMetaContext, metaData("d", "base:allocation"))...), opt(optGo, infoData("d", 1, 2, 3))...))
	f.Add(append(append(flags, opt(optList, nil)...), opt(optExportName, []byte("d"))...))
	f.Add(append(append(flags, opt(0x7654321, []byte{1, 2, 3, 4})...), opt(optAbort, nil)...))
	f.Add(append(flags, opt(optStartTLS, nil)...))
	s := New(Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := s.AddExport("d", vfs.NewMemDevice(1<<20), ExportOptions{}); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c := newConn(s, &fuzzConn{r: bytes.NewReader(data)})
		exp, st, err := c.negotiate()
		if err == nil && exp == nil {
			t.Fatal("negotiation succeeded without an export")
		}
		for _, m := range st.meta {
			if m.id != ctxBaseAllocation && m.id != ctxAllocationDepth {
				t.Fatalf("bad context %+v", m)
			}
		}
	})
}
