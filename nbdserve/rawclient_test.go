package nbdserve

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// rawClient speaks NBD byte by byte, to test what well-behaved clients never send.
type rawClient struct {
	t          testing.TB
	c          net.Conn
	structured bool
}

func newRawClient(t testing.TB, c net.Conn) *rawClient {
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return &rawClient{t: t, c: c}
}

func (rc *rawClient) write(b []byte) {
	rc.t.Helper()
	if _, err := rc.c.Write(b); err != nil {
		rc.t.Fatalf("write: %v", err)
	}
}

func (rc *rawClient) read(n int) []byte {
	rc.t.Helper()
	b := make([]byte, n)
	if _, err := io.ReadFull(rc.c, b); err != nil {
		rc.t.Fatalf("read %d bytes: %v", n, err)
	}
	return b
}

// expectClosed checks that the server closes the connection (possibly after some bytes).
func (rc *rawClient) expectClosed() {
	rc.t.Helper()
	rc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, rc.c); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		rc.t.Fatalf("expected the server to close the connection: %v", err)
	}
}

// greet reads the server greeting and sends client flags.
func (rc *rawClient) greet(flags uint32) {
	rc.t.Helper()
	g := rc.read(18)
	if binary.BigEndian.Uint64(g) != magicNBD || binary.BigEndian.Uint64(g[8:]) != magicOpt ||
		binary.BigEndian.Uint16(g[16:]) != flagFixedNewstyle|flagNoZeroes {
		rc.t.Fatalf("bad greeting % x", g)
	}
	rc.write(binary.BigEndian.AppendUint32(nil, flags))
}

func (rc *rawClient) sendOpt(opt uint32, data []byte) {
	rc.t.Helper()
	b := binary.BigEndian.AppendUint64(nil, magicOpt)
	b = binary.BigEndian.AppendUint32(b, opt)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	rc.write(append(b, data...))
}

func (rc *rawClient) optReply() (opt, typ uint32, data []byte) {
	rc.t.Helper()
	h := rc.read(optReplyHeaderSize)
	if binary.BigEndian.Uint64(h) != magicOptReply {
		rc.t.Fatalf("bad option reply magic % x", h)
	}
	return binary.BigEndian.Uint32(h[8:]), binary.BigEndian.Uint32(h[12:]), rc.read(int(binary.BigEndian.Uint32(h[16:])))
}

// expectOptReply reads one reply and checks its option and type.
func (rc *rawClient) expectOptReply(opt, typ uint32) []byte {
	rc.t.Helper()
	o, ty, data := rc.optReply()
	if o != opt || ty != typ {
		rc.t.Fatalf("option reply (%d, %#x %q), want (%d, %#x)", o, ty, data, opt, typ)
	}
	return data
}

func infoData(name string, infos ...uint16) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
	b = append(b, name...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(infos)))
	for _, i := range infos {
		b = binary.BigEndian.AppendUint16(b, i)
	}
	return b
}

func metaData(name string, queries ...string) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
	b = append(b, name...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(queries)))
	for _, q := range queries {
		b = binary.BigEndian.AppendUint32(b, uint32(len(q)))
		b = append(b, q...)
	}
	return b
}

// goExport sends GO and reads the replies up to ACK; it returns size and transmission flags.
func (rc *rawClient) goExport(name string) (uint64, uint16) {
	rc.t.Helper()
	rc.sendOpt(optGo, infoData(name, infoBlockSize))
	var size uint64
	var flags uint16
	for {
		_, typ, data := rc.optReply()
		switch typ {
		case repAck:
			return size, flags
		case repInfo:
			if binary.BigEndian.Uint16(data) == infoExport {
				size, flags = binary.BigEndian.Uint64(data[2:]), binary.BigEndian.Uint16(data[10:])
			}
		default:
			rc.t.Fatalf("GO %q: reply %#x %q", name, typ, data)
		}
	}
}

// connect runs a whole handshake to export name; structured and meta select the options.
func connectRaw(t testing.TB, ts *testServer, name string, structured bool, meta ...string) *rawClient {
	t.Helper()
	rc := newRawClient(t, ts.dial(t))
	rc.greet(flagCFixedNewstyle | flagCNoZeroes)
	if structured {
		rc.sendOpt(optStructuredReply, nil)
		rc.expectOptReply(optStructuredReply, repAck)
		rc.structured = true
	}
	if len(meta) > 0 {
		rc.sendOpt(optSetMetaContext, metaData(name, meta...))
		for {
			_, typ, _ := rc.optReply()
			if typ == repAck {
				break
			}
			if typ != repMetaContext {
				t.Fatalf("SET_META_CONTEXT reply %#x", typ)
			}
		}
	}
	rc.goExport(name)
	return rc
}

func (rc *rawClient) request(typ, flags uint16, cookie, off uint64, length uint32, payload []byte) {
	rc.t.Helper()
	b := make([]byte, requestSize, requestSize+len(payload))
	binary.BigEndian.PutUint32(b, magicRequest)
	binary.BigEndian.PutUint16(b[4:], flags)
	binary.BigEndian.PutUint16(b[6:], typ)
	binary.BigEndian.PutUint64(b[8:], cookie)
	binary.BigEndian.PutUint64(b[16:], off)
	binary.BigEndian.PutUint32(b[24:], length)
	rc.write(append(b, payload...))
}

// chunk is one reply message: a simple reply (typ = 0xffff) or a structured chunk.
type chunk struct {
	flags, typ uint16
	cookie     uint64
	errno      uint32
	payload    []byte
}

const simpleTyp = 0xffff

// next reads one simple reply or structured chunk. For simple replies to READs the caller says
// how many data bytes follow a successful reply via readLen(cookie).
func (rc *rawClient) next(readLen func(cookie uint64) int) chunk {
	rc.t.Helper()
	h := rc.read(4)
	switch m := binary.BigEndian.Uint32(h); m {
	case magicSimple:
		r := rc.read(12)
		ch := chunk{typ: simpleTyp, flags: replyFlagDone, errno: binary.BigEndian.Uint32(r), cookie: binary.BigEndian.Uint64(r[4:])}
		if ch.errno == 0 && readLen != nil {
			ch.payload = rc.read(readLen(ch.cookie))
		}
		return ch
	case magicStructured:
		r := rc.read(16)
		ch := chunk{flags: binary.BigEndian.Uint16(r), typ: binary.BigEndian.Uint16(r[2:]), cookie: binary.BigEndian.Uint64(r[4:])}
		ch.payload = rc.read(int(binary.BigEndian.Uint32(r[12:])))
		if ch.typ&(1<<15) != 0 {
			ch.errno = binary.BigEndian.Uint32(ch.payload)
		}
		return ch
	default:
		rc.t.Fatalf("bad reply magic %#x", m)
	}
	return chunk{}
}

// readReply collects the reply to one READ of n bytes at off (the only request in flight):
// the data (holes filled with zeros) and the error.
func (rc *rawClient) readReply(off uint64, n int) ([]byte, uint32) {
	rc.t.Helper()
	data := make([]byte, n)
	for {
		ch := rc.next(func(uint64) int { return n })
		if ch.errno != 0 {
			if ch.flags&replyFlagDone == 0 {
				rc.t.Fatal("error chunk without DONE")
			}
			return nil, ch.errno
		}
		switch ch.typ {
		case simpleTyp:
			return ch.payload, 0
		case chunkOffsetData:
			o := binary.BigEndian.Uint64(ch.payload)
			copy(data[o-off:], ch.payload[8:])
		case chunkOffsetHole:
			o, l := binary.BigEndian.Uint64(ch.payload), binary.BigEndian.Uint32(ch.payload[8:])
			clear(data[o-off : o-off+uint64(l)])
		case chunkNone:
		default:
			rc.t.Fatalf("unexpected chunk type %d", ch.typ)
		}
		if ch.flags&replyFlagDone != 0 {
			return data, 0
		}
	}
}

// simple sends a request without reply data and returns its error.
func (rc *rawClient) simple(typ, flags uint16, off uint64, length uint32, payload []byte) uint32 {
	rc.t.Helper()
	rc.request(typ, flags, 77, off, length, payload)
	ch := rc.next(nil)
	if ch.cookie != 77 || ch.flags&replyFlagDone == 0 {
		rc.t.Fatalf("reply %+v", ch)
	}
	return ch.errno
}
