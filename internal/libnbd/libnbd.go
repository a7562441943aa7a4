package libnbd

/*
#cgo pkg-config: libnbd
#include <stdlib.h>
#include <errno.h>
#include <string.h>
#include <libnbd.h>

// libnbd keeps the last error per thread; every wrapper saves it before returning to Go,
// which may move the goroutine to another thread between two cgo calls.
typedef struct { char *msg; int eno; } h2_err;

static void h2_save(h2_err *e) {
	const char *m = nbd_get_error();
	e->msg = m ? strdup(m) : NULL;
	e->eno = nbd_get_errno();
}

static struct nbd_handle *h2_create(h2_err *e) {
	struct nbd_handle *h = nbd_create();
	if (!h) h2_save(e);
	return h;
}

#define H2_INT(name, call) \
	static int h2_##name(struct nbd_handle *h, h2_err *e) { int r = call; if (r == -1) h2_save(e); return r; }

H2_INT(is_read_only, nbd_is_read_only(h))
H2_INT(can_flush, nbd_can_flush(h))
H2_INT(can_trim, nbd_can_trim(h))
H2_INT(can_zero, nbd_can_zero(h))
H2_INT(can_multi_conn, nbd_can_multi_conn(h))
H2_INT(can_cache, nbd_can_cache(h))
H2_INT(shutdown, nbd_shutdown(h, 0))

static int h2_set_export_name(struct nbd_handle *h, const char *n, h2_err *e) {
	int r = nbd_set_export_name(h, n); if (r == -1) h2_save(e); return r;
}
static int h2_aio_connect_uri(struct nbd_handle *h, const char *u, h2_err *e) {
	int r = nbd_aio_connect_uri(h, u); if (r == -1) h2_save(e); return r;
}
static int h2_aio_connect_unix(struct nbd_handle *h, const char *p, h2_err *e) {
	int r = nbd_aio_connect_unix(h, p); if (r == -1) h2_save(e); return r;
}
static int h2_aio_connect_tcp(struct nbd_handle *h, const char *host, const char *port, h2_err *e) {
	int r = nbd_aio_connect_tcp(h, host, port); if (r == -1) h2_save(e); return r;
}
static int h2_poll(struct nbd_handle *h, int ms, h2_err *e) {
	int r = nbd_poll(h, ms); if (r == -1) h2_save(e); return r;
}
static int64_t h2_get_size(struct nbd_handle *h, h2_err *e) {
	int64_t r = nbd_get_size(h); if (r == -1) h2_save(e); return r;
}
static int64_t h2_get_block_size(struct nbd_handle *h, int which, h2_err *e) {
	int64_t r = nbd_get_block_size(h, which); if (r == -1) h2_save(e); return r;
}
static int64_t h2_aio_cache(struct nbd_handle *h, uint64_t n, uint64_t off, h2_err *e) {
	nbd_completion_callback none = { 0 };
	int64_t r = nbd_aio_cache(h, n, off, none, 0); if (r == -1) h2_save(e); return r;
}
static int64_t h2_aio_pread(struct nbd_handle *h, void *buf, size_t n, uint64_t off, h2_err *e) {
	nbd_completion_callback none = { 0 };
	int64_t r = nbd_aio_pread(h, buf, n, off, none, 0); if (r == -1) h2_save(e); return r;
}
static int h2_aio_command_completed(struct nbd_handle *h, int64_t cookie, h2_err *e) {
	int r = nbd_aio_command_completed(h, (uint64_t)cookie); if (r == -1) h2_save(e); return r;
}
static int h2_add_meta_context(struct nbd_handle *h, const char *n, h2_err *e) {
	int r = nbd_add_meta_context(h, n); if (r == -1) h2_save(e); return r;
}
static int h2_can_meta_context(struct nbd_handle *h, const char *n, h2_err *e) {
	int r = nbd_can_meta_context(h, n); if (r == -1) h2_save(e); return r;
}

// h2_bs collects the base:allocation descriptors (length, flags pairs) of one block status
// reply. It lives in C memory: libnbd calls h2_bs_cb after nbd_aio_block_status returns.
typedef struct { uint32_t *e; size_t n, cap; } h2_bs;

static int h2_bs_cb(void *ud, const char *metacontext, uint64_t off, uint32_t *entries, size_t nr, int *error) {
	h2_bs *b = ud;
	if (strcmp(metacontext, LIBNBD_CONTEXT_BASE_ALLOCATION) != 0) return 0;
	if (b->n + nr > b->cap) {
		size_t cap = 2 * (b->n + nr);
		uint32_t *p = realloc(b->e, cap * sizeof *p);
		if (!p) { *error = ENOMEM; return -1; }
		b->e = p; b->cap = cap;
	}
	memcpy(b->e + b->n, entries, nr * sizeof *entries);
	b->n += nr;
	return 0;
}
static int64_t h2_aio_block_status(struct nbd_handle *h, h2_bs *b, uint64_t count, uint64_t off, uint32_t flags, h2_err *e) {
	nbd_extent_callback cb = { .callback = h2_bs_cb, .user_data = b };
	nbd_completion_callback none = { 0 };
	int64_t r = nbd_aio_block_status(h, count, off, cb, none, flags); if (r == -1) h2_save(e); return r;
}
*/
import "C"

import (
	"context"
	"errors"
	"strings"
	"sync"
	"syscall"
	"unsafe"
)

// pollInterval bounds how long a call waits in libnbd before looking at its context again.
const pollInterval = 50 // milliseconds

// Error is a failed libnbd call: the call, libnbd's message and its errno (0 when none).
type Error struct {
	Op    string
	Msg   string
	Errno syscall.Errno
}

func (e *Error) Error() string {
	// libnbd's messages start with the function name and end with strerror(errno).
	msg := e.Msg
	if !strings.HasPrefix(msg, "nbd_") {
		msg = e.Op + ": " + msg
	}
	if e.Errno != 0 && !strings.Contains(strings.ToLower(msg), strings.ToLower(e.Errno.Error())) {
		msg += " (" + e.Errno.Error() + ")"
	}
	return "libnbd: " + msg
}

// Unwrap returns the errno, so errors.Is(err, syscall.EIO) works.
func (e *Error) Unwrap() error {
	if e.Errno == 0 {
		return nil
	}
	return e.Errno
}

// ErrClosed is returned by calls on a closed handle.
var ErrClosed = errors.New("libnbd: handle closed")

func toErr(op string, e *C.h2_err) error {
	err := &Error{Op: op, Msg: "unknown error", Errno: syscall.Errno(e.eno)}
	if e.msg != nil {
		err.Msg = C.GoString(e.msg)
		C.free(unsafe.Pointer(e.msg))
	}
	return err
}

// Handle is one libnbd handle (one connection). Calls are serialized by a mutex: one command
// is in flight at a time, so use several handles for parallel reads.
type Handle struct {
	mu sync.Mutex
	h  *C.struct_nbd_handle // nil once closed
}

// Create returns a new, unconnected handle.
func Create() (*Handle, error) {
	var e C.h2_err
	h := C.h2_create(&e)
	if h == nil {
		return nil, toErr("nbd_create", &e)
	}
	return &Handle{h: h}, nil
}

// Close closes the connection (abruptly if still open) and frees the handle. Idempotent.
func (h *Handle) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closeLocked()
}

func (h *Handle) closeLocked() {
	if h.h != nil {
		C.nbd_close(h.h)
		h.h = nil
	}
}

// SetExportName sets the export name used by ConnectUnix and ConnectTCP.
func (h *Handle) SetExportName(name string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.h == nil {
		return ErrClosed
	}
	cs := C.CString(name)
	defer C.free(unsafe.Pointer(cs))
	var e C.h2_err
	if C.h2_set_export_name(h.h, cs, &e) == -1 {
		return toErr("nbd_set_export_name", &e)
	}
	return nil
}

// ConnectURI connects to an NBD URI (nbd://host[:port]/export, nbd+unix:///export?socket=P)
// and negotiates, giving up when ctx ends (the handle is then closed).
func (h *Handle) ConnectURI(ctx context.Context, uri string) error {
	cs := C.CString(uri)
	defer C.free(unsafe.Pointer(cs))
	return h.connect(ctx, "nbd_connect_uri", func(e *C.h2_err) C.int { return C.h2_aio_connect_uri(h.h, cs, e) })
}

// ConnectUnix connects to a Unix socket and negotiates.
func (h *Handle) ConnectUnix(ctx context.Context, path string) error {
	cs := C.CString(path)
	defer C.free(unsafe.Pointer(cs))
	return h.connect(ctx, "nbd_connect_unix", func(e *C.h2_err) C.int { return C.h2_aio_connect_unix(h.h, cs, e) })
}

// ConnectTCP connects to host:port and negotiates.
func (h *Handle) ConnectTCP(ctx context.Context, host, port string) error {
	ch, cp := C.CString(host), C.CString(port)
	defer C.free(unsafe.Pointer(ch))
	defer C.free(unsafe.Pointer(cp))
	return h.connect(ctx, "nbd_connect_tcp", func(e *C.h2_err) C.int { return C.h2_aio_connect_tcp(h.h, ch, cp, e) })
}

func (h *Handle) connect(ctx context.Context, op string, start func(*C.h2_err) C.int) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.h == nil {
		return ErrClosed
	}
	var e C.h2_err
	if start(&e) == -1 {
		return toErr(op, &e)
	}
	for C.nbd_aio_is_connecting(h.h) == 1 {
		if err := ctx.Err(); err != nil {
			h.closeLocked()
			return err
		}
		if C.h2_poll(h.h, pollInterval, &e) == -1 {
			return toErr(op, &e)
		}
	}
	if C.nbd_aio_is_ready(h.h) != 1 {
		return &Error{Op: op, Msg: "connection not ready after negotiation"}
	}
	return nil
}

// Size returns the export size.
func (h *Handle) Size() (int64, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.h == nil {
		return 0, ErrClosed
	}
	var e C.h2_err
	r := C.h2_get_size(h.h, &e)
	if r == -1 {
		return 0, toErr("nbd_get_size", &e)
	}
	return int64(r), nil
}

// BlockSize kinds for BlockSize.
const (
	SizeMinimum   = C.LIBNBD_SIZE_MINIMUM
	SizePreferred = C.LIBNBD_SIZE_PREFERRED
	SizeMaximum   = C.LIBNBD_SIZE_MAXIMUM
)

// BlockSize returns a block size constraint the server advertised (0 when none).
func (h *Handle) BlockSize(which int) (int64, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.h == nil {
		return 0, ErrClosed
	}
	var e C.h2_err
	r := C.h2_get_block_size(h.h, C.int(which), &e)
	if r == -1 {
		return 0, toErr("nbd_get_block_size", &e)
	}
	return int64(r), nil
}

func (h *Handle) flag(op string, f func(*C.struct_nbd_handle, *C.h2_err) C.int) (bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.h == nil {
		return false, ErrClosed
	}
	var e C.h2_err
	r := f(h.h, &e)
	if r == -1 {
		return false, toErr(op, &e)
	}
	return r == 1, nil
}

// IsReadOnly reports whether the export refuses writes.
func (h *Handle) IsReadOnly() (bool, error) {
	return h.flag("nbd_is_read_only", func(p *C.struct_nbd_handle, e *C.h2_err) C.int { return C.h2_is_read_only(p, e) })
}

// CanFlush reports whether the server supports flush.
func (h *Handle) CanFlush() (bool, error) {
	return h.flag("nbd_can_flush", func(p *C.struct_nbd_handle, e *C.h2_err) C.int { return C.h2_can_flush(p, e) })
}

// CanTrim reports whether the server supports trim.
func (h *Handle) CanTrim() (bool, error) {
	return h.flag("nbd_can_trim", func(p *C.struct_nbd_handle, e *C.h2_err) C.int { return C.h2_can_trim(p, e) })
}

// CanZero reports whether the server supports write zeroes.
func (h *Handle) CanZero() (bool, error) {
	return h.flag("nbd_can_zero", func(p *C.struct_nbd_handle, e *C.h2_err) C.int { return C.h2_can_zero(p, e) })
}

// CanMultiConn reports whether several connections to the export see consistent data.
func (h *Handle) CanMultiConn() (bool, error) {
	return h.flag("nbd_can_multi_conn", func(p *C.struct_nbd_handle, e *C.h2_err) C.int { return C.h2_can_multi_conn(p, e) })
}

// CanCache reports whether the server supports the cache command.
func (h *Handle) CanCache() (bool, error) {
	return h.flag("nbd_can_cache", func(p *C.struct_nbd_handle, e *C.h2_err) C.int { return C.h2_can_cache(p, e) })
}

// Pread reads len(p) bytes at off. The command is sent asynchronously and polled so that ctx
// can end it; when ctx ends mid-command the connection is closed (the handle is then dead and
// must be replaced) and ctx.Err() is returned. A server error reply (the handle stays usable)
// is an *Error with the server's errno.
func (h *Handle) Pread(ctx context.Context, p []byte, off int64) error {
	if len(p) == 0 {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.h == nil {
		return ErrClosed
	}
	// libnbd writes the reply after this call returns, so the buffer must be C memory.
	buf := C.malloc(C.size_t(len(p)))
	if buf == nil {
		return &Error{Op: "nbd_aio_pread", Msg: "out of memory", Errno: syscall.ENOMEM}
	}
	var e C.h2_err
	cookie := C.h2_aio_pread(h.h, buf, C.size_t(len(p)), C.uint64_t(off), &e)
	if cookie == -1 {
		C.free(buf)
		return toErr("nbd_aio_pread", &e)
	}
	err := h.awaitLocked(ctx, "nbd_pread", cookie)
	if err == nil {
		copy(p, unsafe.Slice((*byte)(buf), len(p)))
	}
	C.free(buf)
	return err
}

// awaitLocked polls until the command with the given cookie completes. When ctx ends first, or
// the connection fails, it closes the handle, so that the reply can no longer land in memory
// the caller frees once it returns.
func (h *Handle) awaitLocked(ctx context.Context, op string, cookie C.int64_t) error {
	var e C.h2_err
	for {
		switch C.h2_aio_command_completed(h.h, cookie, &e) {
		case 1:
			return nil
		case -1:
			return toErr(op, &e)
		}
		if err := ctx.Err(); err != nil {
			h.closeLocked()
			return err
		}
		if C.h2_poll(h.h, pollInterval, &e) == -1 {
			err := toErr("nbd_poll", &e)
			h.closeLocked()
			return err
		}
	}
}

// MetaContextBaseAllocation is the metadata context BlockStatus reports.
const MetaContextBaseAllocation = "base:allocation"

// AddMetaContext asks the server, when connecting, for a metadata context (call it before
// Connect*). BlockStatus needs MetaContextBaseAllocation.
func (h *Handle) AddMetaContext(name string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.h == nil {
		return ErrClosed
	}
	cs := C.CString(name)
	defer C.free(unsafe.Pointer(cs))
	var e C.h2_err
	if C.h2_add_meta_context(h.h, cs, &e) == -1 {
		return toErr("nbd_add_meta_context", &e)
	}
	return nil
}

// CanMetaContext reports whether the server agreed to the metadata context name.
func (h *Handle) CanMetaContext(name string) (bool, error) {
	cs := C.CString(name)
	defer C.free(unsafe.Pointer(cs))
	return h.flag("nbd_can_meta_context", func(p *C.struct_nbd_handle, e *C.h2_err) C.int { return C.h2_can_meta_context(p, cs, e) })
}

// Block status flags of the base:allocation context.
const (
	StateHole = 1 // not allocated
	StateZero = 2 // reads as zeros
)

// Status is one base:allocation descriptor: Len bytes with the given State* flags.
type Status struct {
	Len   int64
	Flags uint32
}

// BlockStatus asks for the base:allocation status of [off, off+length) (length < 4 GiB) and
// returns the descriptors in order from off, as the server sent them: they may cover less than
// length (callers loop), and the last one may run past it. The handle must have been connected
// after AddMetaContext(MetaContextBaseAllocation). Like Pread, it gives up when ctx ends and
// the handle is then dead.
func (h *Handle) BlockStatus(ctx context.Context, off, length int64) ([]Status, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.h == nil {
		return nil, ErrClosed
	}
	b := (*C.h2_bs)(C.calloc(1, C.size_t(unsafe.Sizeof(C.h2_bs{}))))
	if b == nil {
		return nil, &Error{Op: "nbd_aio_block_status", Msg: "out of memory", Errno: syscall.ENOMEM}
	}
	defer func() {
		C.free(unsafe.Pointer(b.e))
		C.free(unsafe.Pointer(b))
	}()
	var e C.h2_err
	cookie := C.h2_aio_block_status(h.h, b, C.uint64_t(length), C.uint64_t(off), 0, &e)
	if cookie == -1 {
		return nil, toErr("nbd_aio_block_status", &e)
	}
	if err := h.awaitLocked(ctx, "nbd_block_status", cookie); err != nil {
		return nil, err
	}
	entries := unsafe.Slice(b.e, b.n)
	out := make([]Status, 0, len(entries)/2)
	for i := 0; i+1 < len(entries); i += 2 {
		out = append(out, Status{Len: int64(entries[i]), Flags: uint32(entries[i+1])})
	}
	return out, nil
}

// Cache asks the server to prefetch length bytes at off (NBD_CMD_CACHE) and waits for its
// answer. Like Pread, a ctx that ends mid-command closes the connection.
func (h *Handle) Cache(ctx context.Context, off, length int64) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.h == nil {
		return ErrClosed
	}
	var e C.h2_err
	cookie := C.h2_aio_cache(h.h, C.uint64_t(length), C.uint64_t(off), &e)
	if cookie == -1 {
		return toErr("nbd_aio_cache", &e)
	}
	return h.awaitLocked(ctx, "nbd_cache", cookie)
}

// Alive reports whether the connection is open and usable.
func (h *Handle) Alive() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.h == nil {
		return false
	}
	return C.nbd_aio_is_ready(h.h) == 1 || C.nbd_aio_is_processing(h.h) == 1
}

// Shutdown asks the server to end the connection cleanly (NBD_CMD_DISC) after pending
// commands; Close is still needed.
func (h *Handle) Shutdown() error {
	_, err := h.flag("nbd_shutdown", func(p *C.struct_nbd_handle, e *C.h2_err) C.int { return C.h2_shutdown(p, e) })
	return err
}
