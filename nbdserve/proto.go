package nbdserve

import (
	"encoding/binary"
	"fmt"
)

// Wire constants of the NBD protocol (NetworkBlockDevice/nbd doc/proto.md). All integers on the
// wire are big-endian.
const (
	magicNBD        = 0x4e42444d41474943 // "NBDMAGIC"
	magicOpt        = 0x49484156454F5054 // "IHAVEOPT"
	magicOptReply   = 0x0003e889045565a9
	magicRequest    = 0x25609513
	magicSimple     = 0x67446698
	magicStructured = 0x668e33ef

	// Handshake flags (server) and client flags.
	flagFixedNewstyle   = 1 << 0
	flagNoZeroes        = 1 << 1
	flagCFixedNewstyle  = 1 << 0
	flagCNoZeroes       = 1 << 1
	knownClientFlagMask = flagCFixedNewstyle | flagCNoZeroes
)

// Options.
const (
	optExportName      = 1
	optAbort           = 2
	optList            = 3
	optPeekExport      = 4
	optStartTLS        = 5
	optInfo            = 6
	optGo              = 7
	optStructuredReply = 8
	optListMetaContext = 9
	optSetMetaContext  = 10
)

// Option reply types.
const (
	repAck         = 1
	repServer      = 2
	repInfo        = 3
	repMetaContext = 4

	repErrUnsup         = 1<<31 + 1
	repErrPolicy        = 1<<31 + 2
	repErrInvalid       = 1<<31 + 3
	repErrPlatform      = 1<<31 + 4
	repErrTLSReqd       = 1<<31 + 5
	repErrUnknown       = 1<<31 + 6
	repErrShutdown      = 1<<31 + 7
	repErrBlockSizeReqd = 1<<31 + 8
	repErrTooBig        = 1<<31 + 9
)

// NBD_INFO types inside NBD_REP_INFO.
const (
	infoExport      = 0
	infoName        = 1
	infoDescription = 2
	infoBlockSize   = 3
)

// Transmission flags.
const (
	tflagHasFlags        = 1 << 0
	tflagReadOnly        = 1 << 1
	tflagSendFlush       = 1 << 2
	tflagSendFUA         = 1 << 3
	tflagRotational      = 1 << 4
	tflagSendTrim        = 1 << 5
	tflagSendWriteZeroes = 1 << 6
	tflagSendDF          = 1 << 7
	tflagCanMultiConn    = 1 << 8
	tflagSendCache       = 1 << 10
	tflagSendFastZero    = 1 << 11
)

// Commands.
const (
	cmdRead        = 0
	cmdWrite       = 1
	cmdDisc        = 2
	cmdFlush       = 3
	cmdTrim        = 4
	cmdCache       = 5
	cmdWriteZeroes = 6
	cmdBlockStatus = 7
)

// Command flags.
const (
	cmdFlagFUA      = 1 << 0
	cmdFlagNoHole   = 1 << 1
	cmdFlagDF       = 1 << 2
	cmdFlagReqOne   = 1 << 3
	cmdFlagFastZero = 1 << 4
)

// Structured reply chunk types and flags.
const (
	replyFlagDone = 1 << 0

	chunkNone        = 0
	chunkOffsetData  = 1
	chunkOffsetHole  = 2
	chunkBlockStatus = 5
	chunkError       = 1<<15 + 1
)

// base:allocation flags.
const (
	stateHole = 1 << 0
	stateZero = 1 << 1
)

// Sizes and limits.
const (
	requestSize        = 28
	simpleReplySize    = 16
	chunkHeaderSize    = 20
	optHeaderSize      = 16
	optReplyHeaderSize = 20

	// maxOptionLen caps the data of one option; a longer option ends the connection.
	maxOptionLen = 64 << 10
	// maxString is the protocol's limit on export names, queries and messages.
	maxString = 4096

	minBlockSize       = 1
	preferredBlockSize = 4096
	// MaxPayload is the largest READ or WRITE this server accepts (advertised as the maximum
	// block size).
	MaxPayload = 32 << 20
	// maxStatusDescriptors caps the extents in one BLOCK_STATUS chunk (the protocol allows 2^20).
	maxStatusDescriptors = 1 << 16
)

// Metadata contexts this server knows. The ids double as the context ids of SET_META_CONTEXT.
const (
	ctxBaseAllocation  = 1
	ctxAllocationDepth = 2

	nameBaseAllocation  = "base:allocation"
	nameAllocationDepth = "qemu:allocation-depth"
)

// request is one parsed transmission request header.
type request struct {
	flags  uint16
	typ    uint16
	cookie uint64
	off    uint64
	length uint32
}

// parseRequest decodes a 28-byte request header. A wrong magic is a framing error: the caller
// must drop the connection.
func parseRequest(b []byte) (request, error) {
	if len(b) < requestSize {
		return request{}, fmt.Errorf("nbd: short request header (%d bytes)", len(b))
	}
	if m := binary.BigEndian.Uint32(b); m != magicRequest {
		return request{}, fmt.Errorf("nbd: bad request magic %#08x: %w", m, ErrProtocol)
	}
	return request{
		flags:  binary.BigEndian.Uint16(b[4:]),
		typ:    binary.BigEndian.Uint16(b[6:]),
		cookie: binary.BigEndian.Uint64(b[8:]),
		off:    binary.BigEndian.Uint64(b[16:]),
		length: binary.BigEndian.Uint32(b[24:]),
	}, nil
}

func cmdName(t uint16) string {
	switch t {
	case cmdRead:
		return "READ"
	case cmdWrite:
		return "WRITE"
	case cmdDisc:
		return "DISC"
	case cmdFlush:
		return "FLUSH"
	case cmdTrim:
		return "TRIM"
	case cmdCache:
		return "CACHE"
	case cmdWriteZeroes:
		return "WRITE_ZEROES"
	case cmdBlockStatus:
		return "BLOCK_STATUS"
	}
	return fmt.Sprintf("CMD(%d)", t)
}

// putSimpleReply encodes a simple reply header into b[:16].
func putSimpleReply(b []byte, errno uint32, cookie uint64) {
	binary.BigEndian.PutUint32(b, magicSimple)
	binary.BigEndian.PutUint32(b[4:], errno)
	binary.BigEndian.PutUint64(b[8:], cookie)
}

// putChunkHeader encodes a structured reply chunk header into b[:20].
func putChunkHeader(b []byte, flags, typ uint16, cookie uint64, length uint32) {
	binary.BigEndian.PutUint32(b, magicStructured)
	binary.BigEndian.PutUint16(b[4:], flags)
	binary.BigEndian.PutUint16(b[6:], typ)
	binary.BigEndian.PutUint64(b[8:], cookie)
	binary.BigEndian.PutUint32(b[16:], length)
}
