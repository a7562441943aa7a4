package nbdserve

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/h2kvm/h2kvm/vfs"
)

// Test devices for faults and abilities.

// gateDevice blocks reads until its gate channel is closed, and counts flushes.
type gateDevice struct {
	*vfs.MemDevice
	gate    chan struct{}
	flushes atomic.Int64
	started chan struct{} // receives one value per read that reached the gate
}

func (d *gateDevice) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	select {
	case d.started <- struct{}{}:
	default:
	}
	select {
	case <-d.gate:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	return d.MemDevice.ReadAt(ctx, p, off)
}

func (d *gateDevice) Flush(ctx context.Context) error {
	d.flushes.Add(1)
	return d.MemDevice.Flush(ctx)
}

// failDevice fails reads that touch [1M, 2M) and reports extents as an error past 6M.
type failDevice struct{ *vfs.MemDevice }

var errInjected = errors.New("injected media error")

func (d failDevice) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if off < 2<<20 && off+int64(len(p)) > 1<<20 {
		return 0, errInjected
	}
	return d.MemDevice.ReadAt(ctx, p, off)
}

func (d failDevice) Extents(ctx context.Context, off, length int64) ([]vfs.Extent, error) {
	if off >= 6<<20 {
		return nil, errInjected
	}
	return d.MemDevice.Extents(ctx, off, length)
}

// prefetchDevice records CACHE requests.
type prefetchDevice struct {
	*vfs.MemDevice
	mu     sync.Mutex
	ranges [][2]int64
}

func (d *prefetchDevice) Prefetch(ctx context.Context, off, length int64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ranges = append(d.ranges, [2]int64{off, length})
	return nil
}

func TestCache(t *testing.T) {
	ts := startServer(t, Options{})
	pd := &prefetchDevice{MemDevice: vfs.NewMemDevice(1 << 20)}
	if err := ts.AddExport("p", pd, ExportOptions{ReadOnly: true}); err != nil {
		t.Fatal(err)
	}
	if err := ts.AddExport("plain", vfs.NewMemDevice(1<<20), ExportOptions{ReadOnly: true}); err != nil {
		t.Fatal(err)
	}
	rc := connectRaw(t, ts, "p", true)
	if errno := rc.simple(cmdCache, 0, 4096, 65536, nil); errno != 0 {
		t.Fatalf("cache: %d", errno)
	}
	pd.mu.Lock()
	if len(pd.ranges) != 1 || pd.ranges[0] != [2]int64{4096, 65536} {
		t.Errorf("prefetches %v", pd.ranges)
	}
	pd.mu.Unlock()
	rc = connectRaw(t, ts, "plain", false)
	if errno := rc.simple(cmdCache, 0, 0, 1<<20, nil); errno != 0 {
		t.Fatalf("cache without Prefetcher: %d", errno)
	}
}

// fastZeroDevice can zero fast only in the first MiB.
type fastZeroDevice struct{ *vfs.MemDevice }

func (fastZeroDevice) CanZeroFast(off, length int64) bool { return off+length <= 1<<20 }

func TestHandshakeOptions(t *testing.T) {
	ts := startServer(t, Options{DefaultExport: "ro"})
	if err := ts.AddExport("ro", newTestDevice(t), ExportOptions{ReadOnly: true, Description: "d"}); err != nil {
		t.Fatal(err)
	}
	rc := newRawClient(t, ts.dial(t))
	rc.greet(flagCFixedNewstyle) // without NO_ZEROES

	// Unknown option with data (nbd-tester-client -h): ERR_UNSUP echoing the option.
	rc.sendOpt(0x7654321, []byte{1, 2, 3, 4})
	rc.expectOptReply(0x7654321, repErrUnsup)
	// Extended headers (11) are not implemented.
	rc.sendOpt(11, nil)
	rc.expectOptReply(11, repErrUnsup)
	rc.sendOpt(optPeekExport, nil)
	rc.expectOptReply(optPeekExport, repErrUnsup)
	// LIST with data is invalid; without, it lists.
	rc.sendOpt(optList, []byte{0})
	rc.expectOptReply(optList, repErrInvalid)
	rc.sendOpt(optList, nil)
	srv := rc.expectOptReply(optList, repServer)
	if !bytes.Equal(srv, append([]byte{0, 0, 0, 2, 'r', 'o'}, 'd')) {
		t.Errorf("REP_SERVER % x", srv)
	}
	rc.expectOptReply(optList, repAck)
	// STARTTLS without TLS configured: policy.
	rc.sendOpt(optStartTLS, nil)
	rc.expectOptReply(optStartTLS, repErrPolicy)
	// Meta contexts need structured replies first.
	rc.sendOpt(optListMetaContext, metaData("ro"))
	rc.expectOptReply(optListMetaContext, repErrInvalid)
	rc.sendOpt(optStructuredReply, nil)
	rc.expectOptReply(optStructuredReply, repAck)
	// LIST with zero queries lists everything with id 0; "qemu:" lists the qemu namespace.
	rc.sendOpt(optListMetaContext, metaData("ro"))
	if d := rc.expectOptReply(optListMetaContext, repMetaContext); string(d[4:]) != nameBaseAllocation || binary.BigEndian.Uint32(d) != 0 {
		t.Errorf("meta context %q", d)
	}
	rc.expectOptReply(optListMetaContext, repMetaContext)
	rc.expectOptReply(optListMetaContext, repAck)
	rc.sendOpt(optListMetaContext, metaData("ro", "qemu:", "x-unknown:thing"))
	if d := rc.expectOptReply(optListMetaContext, repMetaContext); string(d[4:]) != nameAllocationDepth {
		t.Errorf("meta context %q", d)
	}
	rc.expectOptReply(optListMetaContext, repAck)
	// Broken query (no namespace), unknown export, truncated data.
	rc.sendOpt(optSetMetaContext, metaData("ro", "nonamespace"))
	rc.expectOptReply(optSetMetaContext, repErrInvalid)
	rc.sendOpt(optSetMetaContext, metaData("nope", "base:allocation"))
	rc.expectOptReply(optSetMetaContext, repErrUnknown)
	rc.sendOpt(optSetMetaContext, []byte{0, 0, 0, 9})
	rc.expectOptReply(optSetMetaContext, repErrInvalid)
	rc.sendOpt(optSetMetaContext, metaData("ro", "base:allocation"))
	if d := rc.expectOptReply(optSetMetaContext, repMetaContext); binary.BigEndian.Uint32(d) != ctxBaseAllocation {
		t.Errorf("meta context %q", d)
	}
	rc.expectOptReply(optSetMetaContext, repAck)
	// INFO on an unknown export, malformed INFO, then INFO with NAME and DESCRIPTION.
	rc.sendOpt(optInfo, infoData("nope"))
	rc.expectOptReply(optInfo, repErrUnknown)
	rc.sendOpt(optInfo, []byte{0, 0, 0, 200, 0})
	rc.expectOptReply(optInfo, repErrInvalid)
	rc.sendOpt(optInfo, infoData("", infoName, infoDescription))
	exp := rc.expectOptReply(optInfo, repInfo)
	if binary.BigEndian.Uint64(exp[2:]) != testDevSize {
		t.Errorf("INFO_EXPORT % x", exp)
	}
	if d := rc.expectOptReply(optInfo, repInfo); string(d[2:]) != "ro" {
		t.Errorf("INFO_NAME %q", d)
	}
	if d := rc.expectOptReply(optInfo, repInfo); string(d[2:]) != "d" {
		t.Errorf("INFO_DESCRIPTION %q", d)
	}
	rc.expectOptReply(optInfo, repAck)
	// EXPORT_NAME of the default export without NO_ZEROES: size, flags, 124 zero bytes.
	rc.sendOpt(optExportName, nil)
	b := rc.read(134)
	if binary.BigEndian.Uint64(b) != testDevSize {
		t.Errorf("size % x", b[:8])
	}
	flags := binary.BigEndian.Uint16(b[8:])
	if want := uint16(tflagHasFlags | tflagReadOnly | tflagSendFlush | tflagSendCache | tflagCanMultiConn | tflagSendDF); flags != want {
		t.Errorf("flags %#x, want %#x", flags, want)
	}
	if !bytes.Equal(b[10:], make([]byte, 124)) {
		t.Error("padding not zero")
	}
	// Transmission works, and BLOCK_STATUS uses the context selected before.
	rc.structured = true
	rc.request(cmdBlockStatus, 0, 5, 0, 8<<20, nil)
	ch := rc.next(nil)
	if ch.typ != chunkBlockStatus || ch.flags != replyFlagDone || binary.BigEndian.Uint32(ch.payload) != ctxBaseAllocation {
		t.Fatalf("block status chunk %+v", ch)
	}
	rc.request(cmdDisc, 0, 6, 0, 0, nil)
	rc.expectClosed()
}

func TestHandshakeViolations(t *testing.T) {
	ts := startServer(t, Options{HandshakeTimeout: 2 * time.Second})
	dev := newTestDevice(t)
	if err := ts.AddExport("ro", dev, ExportOptions{ReadOnly: true}); err != nil {
		t.Fatal(err)
	}
	cases := map[string]func(rc *rawClient){
		"garbage": func(rc *rawClient) {
			rc.read(18)
			rc.write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		},
		"unknown client flag": func(rc *rawClient) { rc.greet(flagCFixedNewstyle | 1<<7) },
		"not fixed newstyle":  func(rc *rawClient) { rc.greet(0) },
		"bad option magic": func(rc *rawClient) {
			rc.greet(flagCFixedNewstyle)
			rc.write(make([]byte, 16))
		},
		"oversized option": func(rc *rawClient) {
			rc.greet(flagCFixedNewstyle)
			b := binary.BigEndian.AppendUint64(nil, magicOpt)
			b = binary.BigEndian.AppendUint32(b, optInfo)
			b = binary.BigEndian.AppendUint32(b, 1<<30)
			rc.write(b)
			rc.expectOptReply(optInfo, repErrTooBig)
		},
		"unknown EXPORT_NAME": func(rc *rawClient) {
			rc.greet(flagCFixedNewstyle)
			rc.sendOpt(optExportName, []byte("nope"))
		},
		"abort": func(rc *rawClient) {
			rc.greet(flagCFixedNewstyle)
			rc.sendOpt(optAbort, nil)
			rc.expectOptReply(optAbort, repAck)
		},
		"silent client (timeout)": func(rc *rawClient) { rc.greet(flagCFixedNewstyle) },
		"half an option": func(rc *rawClient) {
			rc.greet(flagCFixedNewstyle)
			rc.write(binary.BigEndian.AppendUint64(nil, magicOpt)[:5])
		},
	}
	for name, f := range cases {
		t.Run(name, func(t *testing.T) {
			rc := newRawClient(t, ts.dial(t))
			f(rc)
			rc.expectClosed()
			// The server still serves a good client.
			good := connectRaw(t, ts, "ro", true)
			good.request(cmdRead, 0, 1, 0, 4096, nil)
			data, errno := good.readReply(0, 4096)
			if errno != 0 || !bytes.Equal(data, deviceBytes(t, dev)[:4096]) {
				t.Fatalf("read after %s: errno %d", name, errno)
			}
		})
	}
}

func TestBadRequests(t *testing.T) {
	ts := startServer(t, Options{})
	ro := newTestDevice(t)
	rw := vfs.NewMemDevice(1 << 20)
	if err := ts.AddExport("ro", ro, ExportOptions{ReadOnly: true}); err != nil {
		t.Fatal(err)
	}
	if err := ts.AddExport("rw", rw, ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, structured := range []bool{false, true} {
		rc := connectRaw(t, ts, "rw", structured)
		expect := func(what string, got, want uint32) {
			t.Helper()
			if got != want {
				t.Errorf("structured=%v %s: errno %d, want %d", structured, what, got, want)
			}
		}
		payload := bytes.Repeat([]byte{0x5a}, 4096)
		expect("write past end", rc.simple(cmdWrite, 0, 1<<20-100, 4096, payload), enospc)
		expect("write at huge offset", rc.simple(cmdWrite, 0, 1<<63, 4096, payload), enospc)
		expect("zero past end", rc.simple(cmdWriteZeroes, 0, 1<<20, 1, nil), enospc)
		expect("trim past end", rc.simple(cmdTrim, 0, 1<<20, 1, nil), einval)
		expect("cache past end", rc.simple(cmdCache, 0, 2<<20, 1, nil), einval)
		expect("unknown command", rc.simple(42, 0, 0, 0, nil), einval)
		expect("unknown flag", rc.simple(cmdFlush, 1<<9, 0, 0, nil), einval)
		expect("NO_HOLE on write", rc.simple(cmdWrite, cmdFlagNoHole, 0, 4096, payload), einval)
		expect("FAST_ZERO not advertised", rc.simple(cmdWriteZeroes, cmdFlagFastZero, 0, 4096, nil), einval)
		expect("block status without context", rc.simple(cmdBlockStatus, 0, 0, 4096, nil), einval)
		expect("misaligned write", rc.simple(cmdWrite, cmdFlagFUA, 3, 4096, payload), 0)
		// An oversized write is refused and its payload drained: framing survives.
		big := make([]byte, MaxPayload+1)
		expect("oversized write", rc.simple(cmdWrite, 0, 0, MaxPayload+1, big), enospc)
		// READ errors.
		rc.request(cmdRead, 0, 1, 1<<20-1, 2, nil)
		if _, errno := rc.readReply(1<<20-1, 2); errno != einval {
			t.Errorf("read past end: %d", errno)
		}
		rc.request(cmdRead, cmdFlagDF, 1, 0, 2, nil)
		if _, errno := rc.readReply(0, 2); (errno == einval) == structured {
			t.Errorf("DF (structured=%v): %d", structured, errno)
		}
		rc.request(cmdRead, 0, 1, 0, MaxPayload+1, nil)
		if _, errno := rc.readReply(0, MaxPayload+1); errno != einval {
			t.Errorf("oversized read: %d", errno)
		}
		// And a misaligned read returns what the misaligned write put there.
		rc.request(cmdRead, 0, 1, 3, 4096, nil)
		if data, errno := rc.readReply(3, 4096); errno != 0 || !bytes.Equal(data, payload) {
			t.Errorf("read back: errno %d", errno)
		}
		rc.request(cmdRead, 0, 1, 0, 0, nil)
		if _, errno := rc.readReply(0, 0); errno != 0 {
			t.Errorf("read of 0 bytes: %d", errno)
		}
	}
	// Writes of every kind to the read-only export: EPERM, payload drained.
	rc := connectRaw(t, ts, "ro", true)
	payload := make([]byte, 4096)
	for _, typ := range []uint16{cmdWrite, cmdTrim, cmdWriteZeroes} {
		var p []byte
		if typ == cmdWrite {
			p = payload
		}
		if errno := rc.simple(typ, 0, 0, 4096, p); errno != eperm {
			t.Errorf("%s on read-only: errno %d", cmdName(typ), errno)
		}
	}
	if errno := rc.simple(cmdFlush, 0, 0, 0, nil); errno != 0 {
		t.Errorf("flush on read-only: %d", errno)
	}
	if !bytes.Equal(deviceBytes(t, ro), deviceBytes(t, newTestDevice(t))) {
		t.Error("read-only device changed")
	}
	// A bad request magic ends the connection.
	rc.write(make([]byte, requestSize))
	rc.expectClosed()
	if st, _ := ts.Stats("ro"); st.Errors != 3 {
		t.Errorf("stats %+v", st)
	}
}

func TestDisconnectMidRequest(t *testing.T) {
	ts := startServer(t, Options{})
	dev := vfs.NewMemDevice(1 << 20)
	if err := ts.AddExport("rw", dev, ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	// Half a request header.
	rc := connectRaw(t, ts, "rw", true)
	rc.write([]byte{0x25, 0x60, 0x95, 0x13, 0, 0, 0, 1})
	rc.c.Close()
	// A write header with half its payload: nothing may be written.
	rc = connectRaw(t, ts, "rw", false)
	b := make([]byte, requestSize)
	binary.BigEndian.PutUint32(b, magicRequest)
	binary.BigEndian.PutUint16(b[6:], cmdWrite)
	binary.BigEndian.PutUint32(b[24:], 65536)
	rc.write(append(b, bytes.Repeat([]byte{1}, 30000)...))
	rc.c.Close()
	// Many reads in flight, then gone without reading the replies.
	rc = connectRaw(t, ts, "rw", true)
	for i := range 64 {
		rc.request(cmdRead, 0, uint64(i), 0, 1<<20, nil)
	}
	rc.c.Close()

	good := connectRaw(t, ts, "rw", true)
	good.request(cmdRead, 0, 1, 0, 1<<20, nil)
	data, errno := good.readReply(0, 1<<20)
	if errno != 0 || !bytes.Equal(data, make([]byte, 1<<20)) {
		t.Fatalf("after broken clients: errno %d, data changed %v", errno, !bytes.Equal(data, make([]byte, 1<<20)))
	}
	if x, _ := dev.Extents(context.Background(), 0, 1<<20); len(x) != 1 || x[0].Kind != vfs.Hole {
		t.Errorf("device was written: %v", x)
	}
}

// TestPipelined sends many requests without waiting and matches the out-of-order replies.
func TestPipelined(t *testing.T) {
	ts := startServer(t, Options{Workers: 8, MaxInFlightBytes: 1})
	dev := newTestDevice(t)
	if err := ts.AddExport("ro", dev, ExportOptions{ReadOnly: true}); err != nil {
		t.Fatal(err)
	}
	want := deviceBytes(t, dev)
	for _, structured := range []bool{false, true} {
		rc := connectRaw(t, ts, "ro", structured)
		const n = 300
		type req struct {
			off uint64
			len int
		}
		reqs := map[uint64]req{}
		for i := range n {
			off := uint64(i) * 27211 % (testDevSize - 200000)
			r := req{off, 1 + i*613%200000}
			reqs[uint64(i)] = r
		}
		var stream []byte
		for i := range n {
			r := reqs[uint64(i)]
			b := make([]byte, requestSize)
			binary.BigEndian.PutUint32(b, magicRequest)
			binary.BigEndian.PutUint16(b[6:], cmdRead)
			binary.BigEndian.PutUint64(b[8:], uint64(i))
			binary.BigEndian.PutUint64(b[16:], r.off)
			binary.BigEndian.PutUint32(b[24:], uint32(r.len))
			stream = append(stream, b...)
		}
		// Written concurrently: the server replies while requests are still arriving.
		go rc.c.Write(stream)
		partial := map[uint64][]byte{}
		for done := 0; done < n; {
			ch := rc.next(func(c uint64) int { return reqs[c].len })
			r, ok := reqs[ch.cookie]
			if !ok {
				t.Fatalf("reply to unknown cookie %d", ch.cookie)
			}
			buf, ok := partial[ch.cookie]
			if !ok {
				buf = make([]byte, r.len)
				partial[ch.cookie] = buf
			}
			switch ch.typ {
			case simpleTyp:
				copy(buf, ch.payload)
			case chunkOffsetData:
				copy(buf[binary.BigEndian.Uint64(ch.payload)-r.off:], ch.payload[8:])
			case chunkOffsetHole:
			default:
				t.Fatalf("chunk %+v", ch)
			}
			if ch.flags&replyFlagDone != 0 {
				if !bytes.Equal(buf, want[r.off:r.off+uint64(r.len)]) {
					t.Fatalf("structured=%v: reply %d differs", structured, ch.cookie)
				}
				delete(partial, ch.cookie)
				delete(reqs, ch.cookie)
				done++
			}
		}
	}
}

func TestStructuredReadChunks(t *testing.T) {
	ts := startServer(t, Options{})
	dev := newTestDevice(t)
	if err := ts.AddExport("ro", dev, ExportOptions{ReadOnly: true}); err != nil {
		t.Fatal(err)
	}
	rc := connectRaw(t, ts, "ro", true)
	// [512K, 4M+32K): data, zero, hole, data → chunks data, hole (zero+hole merged), data.
	off, n := uint64(512<<10), 4<<20-512<<10+32<<10
	rc.request(cmdRead, 0, 9, off, uint32(n), nil)
	var types []uint16
	for {
		ch := rc.next(nil)
		types = append(types, ch.typ)
		if ch.flags&replyFlagDone != 0 {
			break
		}
	}
	if len(types) != 3 || types[0] != chunkOffsetData || types[1] != chunkOffsetHole || types[2] != chunkOffsetData {
		t.Errorf("chunks %v", types)
	}
	// DF: exactly one data chunk.
	rc.request(cmdRead, cmdFlagDF, 9, off, uint32(n), nil)
	if ch := rc.next(nil); ch.typ != chunkOffsetData || ch.flags != replyFlagDone || len(ch.payload) != 8+n {
		t.Errorf("DF reply %d %d %d", ch.typ, ch.flags, len(ch.payload))
	}
}

func TestDeviceErrors(t *testing.T) {
	ts := startServer(t, Options{})
	dev := failDevice{newTestDevice(t)}
	if err := ts.AddExport("bad", dev, ExportOptions{ReadOnly: true}); err != nil {
		t.Fatal(err)
	}
	for _, structured := range []bool{false, true} {
		var meta []string
		if structured {
			meta = []string{nameBaseAllocation}
		}
		rc := connectRaw(t, ts, "bad", structured, meta...)
		rc.request(cmdRead, 0, 1, 1<<20-10, 20, nil)
		if _, errno := rc.readReply(1<<20-10, 20); errno != eio {
			t.Errorf("structured=%v: read error gave %d", structured, errno)
		}
		// The connection goes on; extents failing only degrade a READ to data.
		rc.request(cmdRead, 0, 2, 7<<20, 4096, nil)
		if data, errno := rc.readReply(7<<20, 4096); errno != 0 || !bytes.Equal(data, make([]byte, 4096)) {
			t.Errorf("structured=%v: read after error: %d", structured, errno)
		}
		if structured {
			if errno := rc.simple(cmdBlockStatus, 0, 7<<20, 4096, nil); errno != eio {
				t.Errorf("block status error gave %d", errno)
			}
		}
	}
}

func TestFastZeroAndFUA(t *testing.T) {
	ts := startServer(t, Options{})
	fz := fastZeroDevice{vfs.NewMemDevice(4 << 20)}
	gd := &gateDevice{MemDevice: vfs.NewMemDevice(1 << 20), gate: make(chan struct{})}
	close(gd.gate)
	if err := ts.AddExport("fz", fz, ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := ts.AddExport("count", gd, ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	rc := newRawClient(t, ts.dial(t))
	rc.greet(flagCFixedNewstyle | flagCNoZeroes)
	if _, flags := rc.goExport("fz"); flags&tflagSendFastZero == 0 {
		t.Fatalf("flags %#x without SEND_FAST_ZERO", flags)
	}
	fillRandom(t, fz.MemDevice, 0, 4<<20, 4)
	if errno := rc.simple(cmdWriteZeroes, cmdFlagFastZero, 0, 1<<20, nil); errno != 0 {
		t.Errorf("fast zero: %d", errno)
	}
	if errno := rc.simple(cmdWriteZeroes, cmdFlagFastZero, 2<<20, 1<<20, nil); errno != enotsup {
		t.Errorf("slow fast zero: %d", errno)
	}
	b := deviceBytes(t, fz)
	if !bytes.Equal(b[:1<<20], make([]byte, 1<<20)) || bytes.Equal(b[2<<20:3<<20], make([]byte, 1<<20)) {
		t.Error("fast zero wrote the wrong range")
	}

	rc = connectRaw(t, ts, "count", false)
	rc.simple(cmdWrite, 0, 0, 4, []byte{1, 2, 3, 4})
	if gd.flushes.Load() != 0 {
		t.Fatal("flush without FUA")
	}
	rc.simple(cmdWrite, cmdFlagFUA, 0, 4, []byte{1, 2, 3, 4})
	rc.simple(cmdWriteZeroes, cmdFlagFUA|cmdFlagNoHole, 0, 4, nil)
	rc.simple(cmdTrim, cmdFlagFUA, 0, 4, nil)
	rc.simple(cmdFlush, 0, 0, 0, nil)
	if n := gd.flushes.Load(); n != 4 {
		t.Errorf("%d flushes, want 4", n)
	}
}
