package nbdserve

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
)

// negotiation is the state of the option haggling phase of one connection.
type negotiation struct {
	noZeroes   bool
	structured bool
	tls        bool
	// meta is the selection of the last SET_META_CONTEXT, valid for export metaExport.
	meta       []metaContext
	metaExport string
}

// negotiate runs the fixed newstyle handshake on c.nc. On success it returns the chosen export
// and the negotiated state; transmission starts right after. Any error means the connection
// must be closed (an orderly ABORT returns errAbort).
func (c *conn) negotiate() (*export, negotiation, error) {
	var st negotiation
	if t := c.s.opt.HandshakeTimeout; t > 0 {
		c.nc.SetDeadline(time.Now().Add(t))
		defer c.nc.SetDeadline(time.Time{})
	}
	if c.isDraining() {
		// Shutdown came before our deadline was set and may have been overwritten by it.
		return nil, st, fmt.Errorf("nbd: server shutting down: %w", ErrServerClosed)
	}
	var hello [18]byte
	binary.BigEndian.PutUint64(hello[0:], magicNBD)
	binary.BigEndian.PutUint64(hello[8:], magicOpt)
	binary.BigEndian.PutUint16(hello[16:], flagFixedNewstyle|flagNoZeroes)
	if _, err := c.nc.Write(hello[:]); err != nil {
		return nil, st, fmt.Errorf("nbd: send greeting: %w", err)
	}
	var cf [4]byte
	if _, err := io.ReadFull(c.nc, cf[:]); err != nil {
		return nil, st, fmt.Errorf("nbd: read client flags: %w", err)
	}
	flags := binary.BigEndian.Uint32(cf[:])
	if flags&^knownClientFlagMask != 0 {
		return nil, st, fmt.Errorf("nbd: unknown client flags %#x: %w", flags, ErrProtocol)
	}
	if flags&flagCFixedNewstyle == 0 {
		return nil, st, fmt.Errorf("nbd: client does not speak fixed newstyle (flags %#x): %w", flags, ErrProtocol)
	}
	st.noZeroes = flags&flagCNoZeroes != 0

	var hdr [optHeaderSize]byte
	for {
		if _, err := io.ReadFull(c.nc, hdr[:]); err != nil {
			return nil, st, fmt.Errorf("nbd: read option header: %w", err)
		}
		if m := binary.BigEndian.Uint64(hdr[:]); m != magicOpt {
			return nil, st, fmt.Errorf("nbd: bad option magic %#016x: %w", m, ErrProtocol)
		}
		opt := binary.BigEndian.Uint32(hdr[8:])
		n := binary.BigEndian.Uint32(hdr[12:])
		if n > maxOptionLen {
			if opt != optExportName {
				c.optReply(opt, repErrTooBig, []byte("option data too long"))
			}
			return nil, st, fmt.Errorf("nbd: option %d with %d bytes of data (limit %d): %w", opt, n, maxOptionLen, ErrProtocol)
		}
		data := make([]byte, n)
		if _, err := io.ReadFull(c.nc, data); err != nil {
			return nil, st, fmt.Errorf("nbd: read option %d data: %w", opt, err)
		}
		exp, done, err := c.option(&st, opt, data)
		if err != nil || done {
			return exp, st, err
		}
	}
}

// errAbort ends a negotiation the client aborted; it is not logged as a failure.
var errAbort = errors.New("nbd: client aborted negotiation")

// option handles one option. done reports that transmission starts (exp is set) or that the
// connection must end (err is set).
func (c *conn) option(st *negotiation, opt uint32, data []byte) (exp *export, done bool, err error) {
	mustTLS := c.s.opt.RequireTLS || (c.s.opt.RequireTLSOnTCP && !c.local)
	if mustTLS && !st.tls && opt != optStartTLS && opt != optAbort {
		if opt == optExportName {
			return nil, true, fmt.Errorf("nbd: EXPORT_NAME before STARTTLS on a TLS-only server: %w", ErrProtocol)
		}
		return nil, false, c.optReply(opt, repErrTLSReqd, []byte("TLS required: send NBD_OPT_STARTTLS first"))
	}
	switch opt {
	case optExportName:
		name, err := checkString(data, "export name")
		if err != nil {
			return nil, true, fmt.Errorf("nbd: EXPORT_NAME: %v: %w", err, ErrProtocol)
		}
		e := c.s.lookup(name)
		if e == nil {
			return nil, true, fmt.Errorf("nbd: EXPORT_NAME: unknown export %q", name)
		}
		if c.needsTLS(st, e) {
			return nil, true, fmt.Errorf("nbd: EXPORT_NAME: writable export %q needs TLS on TCP", name)
		}
		if st.metaExport != e.name {
			st.meta = nil
		}
		b := make([]byte, 10, 134)
		binary.BigEndian.PutUint64(b, uint64(e.dev.Size()))
		binary.BigEndian.PutUint16(b[8:], e.transmissionFlags(st.structured))
		if !st.noZeroes {
			b = b[:134]
		}
		if _, err := c.nc.Write(b); err != nil {
			return nil, true, fmt.Errorf("nbd: EXPORT_NAME reply: %w", err)
		}
		return e, true, nil

	case optAbort:
		c.optReply(opt, repAck, nil) // the client may already be gone
		return nil, true, errAbort

	case optList:
		if len(data) != 0 {
			return nil, false, c.optReply(opt, repErrInvalid, []byte("LIST takes no data"))
		}
		for _, e := range c.s.exportList() {
			b := binary.BigEndian.AppendUint32(nil, uint32(len(e.name)))
			b = append(b, e.name...)
			b = append(b, e.desc...)
			if err := c.optReply(opt, repServer, b); err != nil {
				return nil, true, err
			}
		}
		return nil, false, c.optReply(opt, repAck, nil)

	case optStartTLS:
		return c.startTLS(st, data)

	case optInfo, optGo:
		return c.infoGo(st, opt, data)

	case optStructuredReply:
		if len(data) != 0 {
			return nil, false, c.optReply(opt, repErrInvalid, []byte("STRUCTURED_REPLY takes no data"))
		}
		st.structured = true
		return nil, false, c.optReply(opt, repAck, nil)

	case optListMetaContext, optSetMetaContext:
		return nil, false, c.metaContext(st, opt, data)
	}
	// Unknown options (including the withdrawn PEEK_EXPORT and EXTENDED_HEADERS, which this
	// server does not implement): the data was consumed, framing is intact.
	return nil, false, c.optReply(opt, repErrUnsup, fmt.Appendf(nil, "option %d not supported", opt))
}

func (c *conn) startTLS(st *negotiation, data []byte) (*export, bool, error) {
	switch {
	case len(data) != 0:
		return nil, false, c.optReply(optStartTLS, repErrInvalid, []byte("STARTTLS takes no data"))
	case c.s.opt.TLSConfig == nil:
		return nil, false, c.optReply(optStartTLS, repErrPolicy, []byte("TLS is not configured on this server"))
	case st.tls:
		return nil, false, c.optReply(optStartTLS, repErrInvalid, []byte("TLS already negotiated"))
	}
	if err := c.optReply(optStartTLS, repAck, nil); err != nil {
		return nil, true, err
	}
	tc := tls.Server(c.nc, c.s.opt.TLSConfig)
	if err := tc.Handshake(); err != nil {
		return nil, true, fmt.Errorf("nbd: TLS handshake: %w", err)
	}
	c.setNetConn(tc)
	// All state negotiated before TLS is forgotten.
	*st = negotiation{noZeroes: st.noZeroes, tls: true}
	return nil, false, nil
}

func (c *conn) infoGo(st *negotiation, opt uint32, data []byte) (*export, bool, error) {
	req, err := parseInfoRequest(data)
	if err != nil {
		return nil, false, c.optReply(opt, repErrInvalid, []byte(err.Error()))
	}
	e := c.s.lookup(req.name)
	if e == nil {
		return nil, false, c.optReply(opt, repErrUnknown, fmt.Appendf(nil, "no export named %q", req.name))
	}
	if c.needsTLS(st, e) {
		c.log.Warn("writable export refused to a TCP client without TLS", "export", e.name)
		return nil, false, c.optReply(opt, repErrTLSReqd,
			fmt.Appendf(nil, "export %q is writable: over TCP it is served only after NBD_OPT_STARTTLS", e.name))
	}
	var wantName, wantDesc, wantBlock bool
	for _, t := range req.infos {
		switch t {
		case infoName:
			wantName = true
		case infoDescription:
			wantDesc = true
		case infoBlockSize:
			wantBlock = true
		}
	}
	b := binary.BigEndian.AppendUint16(nil, infoExport)
	b = binary.BigEndian.AppendUint64(b, uint64(e.dev.Size()))
	b = binary.BigEndian.AppendUint16(b, e.transmissionFlags(st.structured))
	if err := c.optReply(opt, repInfo, b); err != nil {
		return nil, true, err
	}
	if wantName {
		b := binary.BigEndian.AppendUint16(nil, infoName)
		if err := c.optReply(opt, repInfo, append(b, e.name...)); err != nil {
			return nil, true, err
		}
	}
	if wantDesc && e.desc != "" {
		b := binary.BigEndian.AppendUint16(nil, infoDescription)
		if err := c.optReply(opt, repInfo, append(b, e.desc...)); err != nil {
			return nil, true, err
		}
	}
	if wantBlock {
		b := binary.BigEndian.AppendUint16(nil, infoBlockSize)
		b = binary.BigEndian.AppendUint32(b, minBlockSize)
		b = binary.BigEndian.AppendUint32(b, preferredBlockSize)
		b = binary.BigEndian.AppendUint32(b, MaxPayload)
		if err := c.optReply(opt, repInfo, b); err != nil {
			return nil, true, err
		}
	}
	if err := c.optReply(opt, repAck, nil); err != nil {
		return nil, true, err
	}
	if opt == optInfo {
		return nil, false, nil
	}
	if st.metaExport != e.name {
		// A selection made for another export does not carry over.
		st.meta = nil
	}
	return e, true, nil
}

// needsTLS reports that e may not be served on this connection before STARTTLS: it is
// writable, the connection is TCP and Options.InsecureTCPWrites is off.
func (c *conn) needsTLS(st *negotiation, e *export) bool {
	return e.w != nil && !c.local && !st.tls && !c.s.opt.InsecureTCPWrites
}

func (c *conn) metaContext(st *negotiation, opt uint32, data []byte) error {
	if !st.structured {
		return c.optReply(opt, repErrInvalid, []byte("negotiate STRUCTURED_REPLY first"))
	}
	req, err := parseMetaRequest(data)
	if err != nil {
		return c.optReply(opt, repErrInvalid, []byte(err.Error()))
	}
	e := c.s.lookup(req.name)
	if e == nil {
		return c.optReply(opt, repErrUnknown, fmt.Appendf(nil, "no export named %q", req.name))
	}
	list := opt == optListMetaContext
	ctxs := matchContexts(req.queries, list)
	if !list {
		st.meta, st.metaExport = ctxs, e.name
	}
	for _, mc := range ctxs {
		id := mc.id
		if list {
			id = 0
		}
		b := binary.BigEndian.AppendUint32(nil, id)
		if err := c.optReply(opt, repMetaContext, append(b, mc.name...)); err != nil {
			return err
		}
	}
	return c.optReply(opt, repAck, nil)
}

// optReply sends one option reply. Write errors are returned (the connection is then dead).
func (c *conn) optReply(opt, typ uint32, data []byte) error {
	b := make([]byte, optReplyHeaderSize, optReplyHeaderSize+len(data))
	binary.BigEndian.PutUint64(b, magicOptReply)
	binary.BigEndian.PutUint32(b[8:], opt)
	binary.BigEndian.PutUint32(b[12:], typ)
	binary.BigEndian.PutUint32(b[16:], uint32(len(data)))
	if _, err := c.nc.Write(append(b, data...)); err != nil {
		return fmt.Errorf("nbd: option %d reply: %w", opt, err)
	}
	return nil
}
