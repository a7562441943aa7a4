package nbdserve

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	"github.com/h2kvm/h2kvm/vfs"
)

// handle executes one validated request and sends its reply.
func (c *conn) handle(e *export, req request, payload *[]byte) {
	ctx := c.ctx
	off, n := int64(req.off), int64(req.length)
	fua := req.flags&cmdFlagFUA != 0
	var err error
	switch req.typ {
	case cmdRead:
		c.read(ctx, e, req)
		return
	case cmdWrite:
		var p []byte
		if payload != nil {
			p = *payload
		}
		if _, err = e.w.WriteAt(ctx, p, off); err == nil {
			e.stats.writeBytes.Add(uint64(len(p)))
		}
	case cmdFlush:
		if e.w != nil {
			err = e.w.Flush(ctx)
		}
		fua = false
	case cmdTrim:
		if n > 0 {
			err = e.w.Trim(ctx, off, n)
		}
	case cmdWriteZeroes:
		switch {
		case n == 0:
		case req.flags&cmdFlagFastZero != 0 && !e.fastZero.CanZeroFast(off, n):
			c.replyError(e, req, enotsup, "zeroing this range is not faster than writing zeros")
			return
		case req.flags&cmdFlagNoHole != 0:
			err = e.w.Zero(ctx, off, n)
		default:
			// Punching holes is allowed: vfs Trim guarantees the range reads as zeros.
			err = e.w.Trim(ctx, off, n)
		}
	case cmdCache:
		if n > 0 {
			err = vfs.Prefetch(ctx, e.dev, off, n)
		}
		fua = false
	case cmdBlockStatus:
		c.blockStatus(ctx, e, req)
		return
	}
	if err == nil && fua && e.w != nil {
		err = e.w.Flush(ctx)
	}
	if err != nil {
		c.replyErr(e, req, err)
		return
	}
	c.replyOK(req)
}

// readFull reads exactly len(p) bytes at off (inside the device) from dev.
func readFull(ctx context.Context, dev vfs.Device, p []byte, off int64) error {
	for done := 0; done < len(p); {
		m, err := dev.ReadAt(ctx, p[done:], off+int64(done))
		done += m
		if done == len(p) {
			return nil
		}
		if err == nil && m == 0 || errors.Is(err, io.EOF) {
			return fmt.Errorf("read %d bytes at %d: device ended early at %d: %w", len(p), off, off+int64(done), vfs.ErrTruncated)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// read answers a READ. Data that must be read into memory is read completely before anything
// is sent, so a device error becomes a clean error reply. Data the device maps to local files
// (vfs.FileMapper) is sent with sendfile(2) while the reply is written; a file that fails then
// (it shrank under us) cuts the connection, as a reply cannot be taken back.
func (c *conn) read(ctx context.Context, e *export, req request) {
	off, n := int64(req.off), int(req.length)
	if n == 0 {
		if !c.st.structured {
			var h [simpleReplySize]byte
			putSimpleReply(h[:], 0, req.cookie)
			c.writeReply(net.Buffers{h[:]})
			return
		}
		var h [chunkHeaderSize]byte
		putChunkHeader(h[:], replyFlagDone, chunkNone, req.cookie, 0)
		c.writeReply(net.Buffers{h[:]})
		return
	}
	segs := []segment{{off: off, n: int64(n), data: true}}
	if c.st.structured && req.flags&cmdFlagDF == 0 {
		// Extents only save bandwidth: when they cannot be had, everything is sent as data.
		if exts, err := extentsCovering(ctx, e.dev, off, int64(n), 0); err == nil {
			segs = readSegments(exts, off, int64(n))
		}
	}
	p := getBuf(n)
	defer putBuf(p)
	buf := *p
	var raw syscall.RawConn
	fm, _ := e.dev.(vfs.FileMapper)
	if fm != nil {
		raw = sendable(c.netConn())
	}
	plans := make([][]part, len(segs))
	for i, s := range segs {
		if !s.data {
			continue
		}
		if raw != nil {
			parts, err := planData(ctx, fm, buf, off, s.off, s.n)
			if err != nil {
				c.replyErr(e, req, err)
				return
			}
			if parts != nil {
				for _, pt := range parts {
					if pt.f == nil {
						if err := readFull(ctx, e.dev, pt.b, pt.off); err != nil {
							c.replyErr(e, req, err)
							return
						}
					}
				}
				plans[i] = parts
				continue
			}
		}
		if err := readFull(ctx, e.dev, buf[s.off-off:s.off-off+s.n], s.off); err != nil {
			c.replyErr(e, req, err)
			return
		}
	}
	data := func(i int, s segment) []part {
		if plans[i] != nil {
			return plans[i]
		}
		return []part{{b: buf[s.off-off : s.off-off+s.n]}}
	}
	var parts []part
	if !c.st.structured {
		var h [simpleReplySize]byte
		putSimpleReply(h[:], 0, req.cookie)
		parts = append([]part{{b: h[:]}}, data(0, segs[0])...)
	} else {
		hdrs := make([]byte, 0, len(segs)*(chunkHeaderSize+12))
		parts = make([]part, 0, 2*len(segs))
		for i, s := range segs {
			var flags uint16
			if i == len(segs)-1 {
				flags = replyFlagDone
			}
			at := len(hdrs)
			if s.data {
				hdrs = hdrs[:at+chunkHeaderSize+8]
				putChunkHeader(hdrs[at:], flags, chunkOffsetData, req.cookie, uint32(8+s.n))
				binary.BigEndian.PutUint64(hdrs[at+chunkHeaderSize:], uint64(s.off))
				parts = append(parts, part{b: hdrs[at:len(hdrs)]})
				parts = append(parts, data(i, s)...)
			} else {
				hdrs = hdrs[:at+chunkHeaderSize+12]
				putChunkHeader(hdrs[at:], flags, chunkOffsetHole, req.cookie, 12)
				binary.BigEndian.PutUint64(hdrs[at+chunkHeaderSize:], uint64(s.off))
				binary.BigEndian.PutUint32(hdrs[at+chunkHeaderSize+8:], uint32(s.n))
				parts = append(parts, part{b: hdrs[at:len(hdrs)]})
			}
		}
	}
	if c.writeParts(raw, parts) == nil {
		e.stats.readBytes.Add(uint64(n))
	}
}

// segment is one chunk of a structured READ reply: data, or a range that reads as zeros.
type segment struct {
	off, n int64
	data   bool
}

// minHole is the smallest zero range sent as a hole chunk; shorter ones travel as data, which
// costs less than the extra chunk header and keeps data chunks large.
const minHole = 512

// readSegments turns extents covering [off, off+n) into READ chunks: Hole and Zero extents of
// at least minHole bytes become holes, everything else data; neighbours of one kind merge.
func readSegments(exts []vfs.Extent, off, n int64) []segment {
	var out []segment
	for _, x := range exts {
		s := segment{off: x.Off, n: x.Len, data: x.Kind == vfs.Data || x.Len < minHole}
		if k := len(out); k > 0 && out[k-1].data == s.data {
			out[k-1].n += s.n
			continue
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return []segment{{off: off, n: n, data: true}}
	}
	return out
}

// extentsCovering returns extents exactly covering [off, off+n) (or a prefix of it when
// limit > 0 and limit extents were collected), checked for order and gaps: a device that breaks
// the Extents contract yields an error rather than a wrong reply.
func extentsCovering(ctx context.Context, dev vfs.Device, off, n int64, limit int) ([]vfs.Extent, error) {
	end := off + n
	var out []vfs.Extent
	for pos := off; pos < end; {
		if limit > 0 && len(out) >= limit {
			break
		}
		exts, err := dev.Extents(ctx, pos, end-pos)
		if err != nil {
			return nil, err
		}
		start := pos
		for _, x := range exts {
			if x.End() <= pos || x.Len <= 0 {
				continue
			}
			if x.Off > pos {
				return nil, fmt.Errorf("extents: gap at %d (next extent starts at %d): %w", pos, x.Off, vfs.ErrCorrupt)
			}
			x.Len = min(x.End(), end) - pos
			x.Off = pos
			out = append(out, x)
			pos = x.End()
			if pos >= end {
				break
			}
		}
		if pos == start {
			return nil, fmt.Errorf("extents: no progress at %d: %w", pos, vfs.ErrCorrupt)
		}
	}
	return out, nil
}

// firstExtent returns the extent at off, clipped to [off, off+n), for BLOCK_STATUS with
// REQ_ONE (qemu sends nothing else, asking about gigabytes at a time). Devices are asked about
// windows growing from 1 MiB, so the work is proportional to the length of the answer, not to
// n: asking a sparse chain about the whole range walked every grain table of it for one
// descriptor (measured: qemu-img compare of a 16 GiB export spent 90% of the server's CPU there).
func firstExtent(ctx context.Context, dev vfs.Device, off, n int64) ([]vfs.Extent, error) {
	for w := int64(1 << 20); ; w *= 8 {
		w = min(w, n)
		exts, err := extentsCovering(ctx, dev, off, w, 1)
		if err != nil {
			return nil, err
		}
		if w == n || exts[0].Len < w {
			return exts, nil
		}
	}
}

// contextFlags is the value an extent has in a metadata context.
func contextFlags(id uint32, x vfs.Extent) uint32 {
	switch id {
	case ctxBaseAllocation:
		switch x.Kind {
		case vfs.Zero:
			return stateZero
		case vfs.Hole:
			return stateHole | stateZero
		}
		return 0
	case ctxAllocationDepth:
		// qemu: 0 = unallocated, 1 = the top layer, 2 = its backing file, ...
		if x.Kind == vfs.Hole {
			return 0
		}
		return uint32(x.Depth) + 1
	}
	return 0
}

// blockStatus answers BLOCK_STATUS with one chunk per selected context.
func (c *conn) blockStatus(ctx context.Context, e *export, req request) {
	off, n := int64(req.off), int64(req.length)
	limit := maxStatusDescriptors
	if req.flags&cmdFlagReqOne != 0 {
		limit = 1
	}
	var exts []vfs.Extent
	var err error
	if limit == 1 {
		exts, err = firstExtent(ctx, e.dev, off, n)
	} else {
		exts, err = extentsCovering(ctx, e.dev, off, n, limit)
	}
	if err != nil {
		c.replyErr(e, req, err)
		return
	}
	bufs := make(net.Buffers, 0, len(c.st.meta))
	for i, mc := range c.st.meta {
		b := make([]byte, chunkHeaderSize+4, chunkHeaderSize+4+8*len(exts))
		binary.BigEndian.PutUint32(b[chunkHeaderSize:], mc.id)
		var last uint32
		for j, x := range exts {
			f := contextFlags(mc.id, x)
			if j > 0 && f == last {
				// Merge with the previous descriptor (lengths stay within the request: u32).
				k := len(b) - 8
				binary.BigEndian.PutUint32(b[k:], binary.BigEndian.Uint32(b[k:])+uint32(x.Len))
				continue
			}
			if req.flags&cmdFlagReqOne != 0 && j > 0 {
				break
			}
			b = binary.BigEndian.AppendUint32(b, uint32(x.Len))
			b = binary.BigEndian.AppendUint32(b, f)
			last = f
		}
		var flags uint16
		if i == len(c.st.meta)-1 {
			flags = replyFlagDone
		}
		putChunkHeader(b, flags, chunkBlockStatus, req.cookie, uint32(len(b)-chunkHeaderSize))
		bufs = append(bufs, b)
	}
	c.writeReply(bufs)
}
