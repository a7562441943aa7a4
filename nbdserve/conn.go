package nbdserve

// Lock order: Server.mu before conn.mu. conn.wmu is never held with either; it serialises
// replies so that the chunks of one reply are never interleaved with another's.

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sync/semaphore"
)

// conn is one client connection: negotiation, then transmission. One goroutine (run) reads
// requests; each request is processed by its own goroutine, at most Options.Workers at once,
// holding at most Options.MaxInFlightBytes of payload buffers between them.
type conn struct {
	// set once
	s      *Server
	log    *slog.Logger
	ctx    context.Context // cancelled when the connection dies; every request uses it
	cancel context.CancelFunc

	mu       sync.Mutex
	nc       net.Conn // guarded by mu (replaced once by STARTTLS)
	exp      *export  // guarded by mu; set when transmission starts
	draining bool     // guarded by mu; Shutdown asked to stop reading requests
	local    bool     // set once: nc is a unix socket

	// set once before transmission starts
	st       negotiation
	inflight *semaphore.Weighted
	workers  chan struct{}
	reqWG    sync.WaitGroup

	wmu  sync.Mutex  // serialises replies on nc
	dead atomic.Bool // a reply could not be written
}

func newConn(s *Server, nc net.Conn) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	// Unix sockets are guarded by file permissions; anything else counts as TCP (see
	// Options.InsecureTCPWrites).
	local := strings.HasPrefix(nc.LocalAddr().Network(), "unix")
	return &conn{
		local:  local,
		s:      s,
		log:    s.log.With("remote", nc.RemoteAddr().String()),
		ctx:    ctx,
		cancel: cancel,
		nc:     nc,
	}
}

func (c *conn) netConn() net.Conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nc
}

func (c *conn) setNetConn(nc net.Conn) {
	c.mu.Lock()
	c.nc = nc
	c.mu.Unlock()
}

func (c *conn) export() *export {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.exp
}

// abort cuts the connection: requests in flight are cancelled, the socket is closed.
func (c *conn) abort() {
	c.cancel()
	c.netConn().Close()
}

// drain stops the reading of new requests; requests in flight finish and are answered.
func (c *conn) drain() {
	c.mu.Lock()
	c.draining = true
	nc := c.nc
	c.mu.Unlock()
	nc.SetReadDeadline(time.Now())
}

func (c *conn) isDraining() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.draining
}

// run serves the connection until it ends.
func (c *conn) run() {
	defer c.cancel()
	c.log.Debug("connection opened")
	exp, st, err := c.negotiate()
	if err != nil {
		switch {
		case errors.Is(err, errAbort):
			c.log.Debug("negotiation aborted by client")
		case errors.Is(err, ErrProtocol):
			c.log.Warn("negotiation failed", "err", err)
		default:
			c.log.Info("negotiation ended", "err", err)
		}
		c.netConn().Close()
		return
	}
	c.mu.Lock()
	c.exp = exp
	draining := c.draining
	c.mu.Unlock()
	if draining {
		// Shutdown began during negotiation; its read deadline may have been cleared.
		c.netConn().Close()
		return
	}
	c.st = st
	c.log = c.log.With("export", exp.name)
	c.inflight = semaphore.NewWeighted(c.s.opt.MaxInFlightBytes)
	c.workers = make(chan struct{}, c.s.opt.Workers)
	exp.stats.conns.Add(1)
	defer exp.stats.conns.Add(-1)
	c.log.Debug("transmission started", "structured", st.structured, "contexts", len(st.meta))
	c.transmit(exp)
	c.log.Debug("connection closed")
}

// transmit reads requests until DISC, a protocol error or the end of the connection, then
// waits for the requests in flight and closes the socket.
func (c *conn) transmit(e *export) {
	nc := c.netConn()
	br := bufio.NewReaderSize(nc, 64<<10)
	var hdr [requestSize]byte
	graceful := false
loop:
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			graceful = c.isDraining()
			if !graceful && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				c.log.Info("reading request", "err", err)
			}
			break
		}
		req, err := parseRequest(hdr[:])
		if err != nil {
			c.log.Warn("dropping connection", "err", err)
			break
		}
		if req.typ == cmdDisc {
			graceful = true
			break
		}
		e.stats.requests.Add(1)
		if errno, msg := c.check(e, req); errno != 0 {
			if req.typ == cmdWrite {
				// Keep framing: the payload of a refused write is consumed.
				if _, err := io.CopyN(io.Discard, br, int64(req.length)); err != nil {
					break
				}
			}
			c.replyError(e, req, errno, msg)
			continue
		}
		var held int64
		if req.typ == cmdRead || req.typ == cmdWrite {
			held = int64(req.length)
		}
		if held > 0 {
			if err := c.inflight.Acquire(c.ctx, held); err != nil {
				break
			}
			if err := c.s.budget.acquire(c.ctx, held); err != nil {
				c.inflight.Release(held)
				break
			}
		}
		var payload *[]byte
		if req.typ == cmdWrite && req.length > 0 {
			payload = getBuf(int(req.length))
			if _, err := io.ReadFull(br, *payload); err != nil {
				putBuf(payload)
				c.release(held)
				graceful = c.isDraining()
				c.log.Info("client went away in the middle of a write payload", "err", err)
				break
			}
		}
		select {
		case c.workers <- struct{}{}:
		case <-c.ctx.Done():
			putBuf(payload)
			c.release(held)
			break loop
		}
		c.reqWG.Add(1)
		go func() {
			defer c.reqWG.Done()
			c.handle(e, req, payload)
			putBuf(payload)
			c.release(held)
			<-c.workers
		}()
	}
	if !graceful {
		c.cancel()
	}
	c.reqWG.Wait()
	c.netConn().Close()
}

// release returns held payload bytes to the connection's and the server's budgets.
func (c *conn) release(held int64) {
	if held > 0 {
		c.s.budget.release(held)
		c.inflight.Release(held)
	}
}

// check validates a request against the export and the negotiated state. It returns 0 or the
// NBD error to answer with, and a message for structured error replies.
func (c *conn) check(e *export, req request) (uint32, string) {
	allowed := uint16(cmdFlagFUA) // FUA is accepted (and ignored where meaningless) everywhere
	switch req.typ {
	case cmdRead:
		if c.st.structured {
			allowed |= cmdFlagDF
		}
	case cmdWrite, cmdFlush, cmdTrim, cmdCache:
	case cmdWriteZeroes:
		allowed |= cmdFlagNoHole
		if e.fastZero != nil {
			allowed |= cmdFlagFastZero
		}
	case cmdBlockStatus:
		allowed |= cmdFlagReqOne
	default:
		return einval, fmt.Sprintf("unknown command %d", req.typ)
	}
	if bad := req.flags &^ allowed; bad != 0 {
		return einval, fmt.Sprintf("flags %#x not valid for %s", bad, cmdName(req.typ))
	}
	writes := req.typ == cmdWrite || req.typ == cmdWriteZeroes || req.typ == cmdTrim
	if writes && e.w == nil {
		return eperm, "export is read-only"
	}
	if req.typ == cmdFlush {
		return 0, ""
	}
	size := uint64(e.dev.Size())
	if req.off > size || uint64(req.length) > size-req.off {
		errno := uint32(einval)
		if req.typ == cmdWrite || req.typ == cmdWriteZeroes {
			errno = enospc
		}
		return errno, fmt.Sprintf("%s of %d bytes at %d beyond export size %d", cmdName(req.typ), req.length, req.off, size)
	}
	if (req.typ == cmdRead || req.typ == cmdWrite) && req.length > MaxPayload {
		return einval, fmt.Sprintf("%s of %d bytes exceeds the maximum payload %d", cmdName(req.typ), req.length, MaxPayload)
	}
	if req.typ == cmdBlockStatus {
		if len(c.st.meta) == 0 {
			return einval, "no metadata context was negotiated"
		}
		if req.length == 0 {
			return einval, "BLOCK_STATUS of length 0"
		}
	}
	return 0, ""
}

// writeReply sends the buffers of one whole reply. After a failed write the connection is cut.
func (c *conn) writeReply(bufs net.Buffers) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.dead.Load() {
		return net.ErrClosed
	}
	nc := c.netConn()
	nc.SetWriteDeadline(time.Now().Add(c.s.opt.WriteTimeout))
	if _, err := bufs.WriteTo(nc); err != nil {
		c.dead.Store(true)
		c.s.stats.dropped.Add(1)
		c.log.Info("writing reply failed; closing", "err", err)
		c.abort()
		return err
	}
	return nil
}

// writeParts sends one whole reply made of memory parts and file parts; file parts need raw,
// the connection's socket (see sendable). After a failed write the connection is cut.
func (c *conn) writeParts(raw syscall.RawConn, parts []part) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.dead.Load() {
		return net.ErrClosed
	}
	nc := c.netConn()
	nc.SetWriteDeadline(time.Now().Add(c.s.opt.WriteTimeout))
	var bufs net.Buffers
	var err error
	for i, p := range parts {
		if p.f == nil {
			bufs = append(bufs, p.b)
			if i < len(parts)-1 {
				continue
			}
		}
		if len(bufs) > 0 {
			if _, err = bufs.WriteTo(nc); err != nil {
				break
			}
			bufs = bufs[:0]
		}
		if p.f != nil {
			if err = sendFile(raw, p.f, p.off, p.n); err != nil {
				break
			}
		}
	}
	if err != nil {
		c.dead.Store(true)
		c.s.stats.dropped.Add(1)
		c.log.Info("writing reply failed; closing", "err", err)
		c.abort()
		return err
	}
	return nil
}

// replyOK sends a successful reply without payload (a simple reply is allowed in both modes).
func (c *conn) replyOK(req request) {
	var b [simpleReplySize]byte
	putSimpleReply(b[:], 0, req.cookie)
	c.writeReply(net.Buffers{b[:]})
}

// replyError sends an error reply: a structured ERROR chunk carrying msg when structured
// replies were negotiated, else a simple reply.
func (c *conn) replyError(e *export, req request, errno uint32, msg string) {
	e.stats.errors.Add(1)
	if !c.st.structured {
		var b [simpleReplySize]byte
		putSimpleReply(b[:], errno, req.cookie)
		c.writeReply(net.Buffers{b[:]})
		return
	}
	if len(msg) > maxString {
		msg = msg[:maxString]
	}
	b := make([]byte, chunkHeaderSize+6, chunkHeaderSize+6+len(msg))
	putChunkHeader(b, replyFlagDone, chunkError, req.cookie, uint32(6+len(msg)))
	binary.BigEndian.PutUint32(b[chunkHeaderSize:], errno)
	binary.BigEndian.PutUint16(b[chunkHeaderSize+4:], uint16(len(msg)))
	c.writeReply(net.Buffers{append(b, msg...)})
}

// replyErr answers a request that failed with a Go error.
func (c *conn) replyErr(e *export, req request, err error) {
	errno := toNBDError(err)
	if errno == eshutdown || errno == eio {
		c.log.Warn("request failed", "cmd", cmdName(req.typ), "off", req.off, "len", req.length, "err", err)
	} else {
		c.log.Debug("request failed", "cmd", cmdName(req.typ), "off", req.off, "len", req.length, "err", err)
	}
	c.replyError(e, req, errno, fmt.Sprintf("%s: %v", cmdName(req.typ), err))
}
