package nbdsrc

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/h2kvm/h2kvm/internal/libnbd"
	"github.com/h2kvm/h2kvm/vfs"
	"github.com/h2kvm/h2kvm/vfs/source/fetch"
	"github.com/h2kvm/h2kvm/vfs/source/internal/urlpath"
	"github.com/h2kvm/h2kvm/vfs/source/retry"
	"github.com/h2kvm/h2kvm/vfs/source/stats"
)

// Defaults for zero Options fields.
const (
	DefaultConns        = fetch.DefaultConns
	DefaultStallTimeout = fetch.DefaultStallTimeout
	// maxRequest bounds one NBD read (servers must accept at least 32 MiB).
	maxRequest = 32 << 20
)

// Options configure NBD sources.
type Options struct {
	// Conns is the number of connections (libnbd handles) a source uses for parallel reads.
	Conns int
	Retry retry.Policy
	// StallTimeout bounds one connect or one read; past it the connection is dropped and the
	// request retried on a new one.
	StallTimeout time.Duration
	// Stats, when set, counts what is fetched.
	Stats *stats.Counter
}

func (o Options) withDefaults() Options {
	fetch.Defaults(&o.Conns, &o.StallTimeout, &o.Stats)
	return o
}

// IsNBDURL reports whether u has an NBD URI scheme.
func IsNBDURL(u *url.URL) bool {
	switch u.Scheme {
	case "nbd", "nbds", "nbd+unix", "nbds+unix":
		return true
	}
	return false
}

// Source is one NBD export read through a small pool of connections.
type Source struct {
	// set once
	uri  string
	name string
	size int64
	opts Options
	pool *fetch.Pool[*libnbd.Handle]
	r    fetch.Reader
}

var (
	_ vfs.Source     = (*Source)(nil)
	_ stats.Reporter = (*Source)(nil)
)

func parseURI(uri string) (*url.URL, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return nil, fmt.Errorf("nbd: bad URI: %w", err)
	}
	if !IsNBDURL(u) {
		return nil, fmt.Errorf("nbd: %s: not an nbd://, nbds://, nbd+unix:// or nbds+unix:// URI", u.Redacted())
	}
	if strings.HasSuffix(u.Scheme, "+unix") && u.Query().Get("socket") == "" {
		return nil, fmt.Errorf("nbd: %s: a Unix socket URI needs ?socket=PATH", u.Redacted())
	}
	return u, nil
}

// Open connects to the export named by uri and learns its size.
func Open(ctx context.Context, uri string, opts Options) (*Source, error) {
	u, err := parseURI(uri)
	if err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	s := &Source{uri: uri, name: u.Redacted(), opts: opts}
	s.pool = fetch.NewPool(fetch.PoolConfig[*libnbd.Handle]{Size: opts.Conns, Dial: s.dial, Close: closeHandle, Stats: opts.Stats})
	var h *libnbd.Handle
	err = fetch.Open(ctx, "nbd", s.name, opts.Retry, opts.Stats, func(ctx context.Context) error {
		var err error
		h, err = s.pool.Get(ctx)
		return err
	})
	if err != nil {
		return nil, err
	}
	if s.size, err = h.Size(); err != nil {
		s.pool.Put(h)
		s.pool.Close()
		return nil, fmt.Errorf("nbd: open %s: %w", s.name, err)
	}
	chunk := maxRequest
	if mx, err := h.BlockSize(libnbd.SizeMaximum); err == nil && mx > 0 && mx < int64(chunk) {
		chunk = int(mx)
	}
	s.pool.Put(h)
	s.r = fetch.Reader{Subsystem: "nbd", Name: s.name, Size: s.size, Chunk: chunk, Retry: opts.Retry, Stats: opts.Stats, Fetch: s.pread}
	return s, nil
}

// dial opens one connection; connect failures are transient (a server restarting).
func (s *Source) dial(ctx context.Context) (*libnbd.Handle, error) {
	h, err := libnbd.Create()
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, s.opts.StallTimeout)
	defer cancel()
	if err := h.ConnectURI(cctx, s.uri); err != nil {
		h.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if cctx.Err() != nil {
			return nil, retry.Transient(fmt.Errorf("connect: no answer within %s", s.opts.StallTimeout))
		}
		var le *libnbd.Error
		if errors.As(err, &le) && (le.Errno == syscall.EINVAL || le.Errno == syscall.ENOTSUP) {
			return nil, err
		}
		if isNoExport(le) {
			return nil, fmt.Errorf("%w: %w", err, vfs.ErrNotFound)
		}
		return nil, retry.Transient(err)
	}
	if s.size > 0 {
		if size, err := h.Size(); err != nil || size != s.size {
			h.Close()
			return nil, fmt.Errorf("export size changed from %d to %d (%v)", s.size, size, err)
		}
	}
	return h, nil
}

// isNoExport reports whether the server refused the export name in the handshake. libnbd
// says so with ENOENT and this text only; a missing Unix socket is ENOENT too, but transient
// (a server restarting).
func isNoExport(le *libnbd.Error) bool {
	return le != nil && le.Errno == syscall.ENOENT && strings.Contains(le.Msg, "has no export named")
}

// closeHandle disconnects politely from a live server and frees the handle.
func closeHandle(h *libnbd.Handle) {
	if h.Alive() {
		_ = h.Shutdown()
	}
	h.Close()
}

// ReadAt reads len(p) bytes at off (fewer, with io.EOF, at the end of the export).
func (s *Source) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	return s.r.ReadAt(ctx, p, off)
}

// pread makes one attempt on one connection.
func (s *Source) pread(ctx context.Context, p []byte, off int64) (int, error) {
	h, err := s.pool.Get(ctx)
	if err != nil {
		return 0, err
	}
	rctx, cancel := context.WithTimeout(ctx, s.opts.StallTimeout)
	s.opts.Stats.AddRequest()
	err = h.Pread(rctx, p, off)
	stalled := rctx.Err() != nil
	cancel()
	alive := h.Alive()
	if alive {
		s.pool.Put(h)
	} else {
		s.pool.Drop(h)
	}
	if err == nil {
		return len(p), nil
	}
	switch {
	case ctx.Err() != nil:
		return 0, ctx.Err()
	case stalled:
		return 0, retry.Transient(fmt.Errorf("no reply within %s", s.opts.StallTimeout))
	case !alive:
		return 0, retry.Transient(err) // connection lost: retry on a new one
	}
	var le *libnbd.Error
	if errors.As(err, &le) {
		switch le.Errno {
		case syscall.EIO, syscall.ENOMEM, syscall.EAGAIN, syscall.ESHUTDOWN:
			return 0, retry.Transient(err)
		case syscall.EINVAL, syscall.EOVERFLOW, syscall.ERANGE:
			return 0, fmt.Errorf("%w: %w", err, vfs.ErrOutOfRange)
		}
	}
	return 0, err
}

// Size returns the export size.
func (s *Source) Size() int64 { return s.size }

// Name returns the URI.
func (s *Source) Name() string { return s.name }

// Stats returns the counter shared through this source's opener.
func (s *Source) Stats() stats.Snapshot { return s.opts.Stats.Snapshot() }

// Close disconnects idle connections; connections in use close when returned.
func (s *Source) Close() error { return s.pool.Close() }

// Opener opens exports of one NBD server: names resolve as paths in the export name (nbdkit's
// file plugin with dir= serves a folder's files as exports), under the first export's folder.
type Opener struct {
	first *url.URL
	root  string
	opts  Options
}

var (
	_ vfs.Opener     = (*Opener)(nil)
	_ stats.Reporter = (*Opener)(nil)
)

// NewOpener returns an opener for the server of first.
func NewOpener(first string, opts Options) (*Opener, error) {
	u, err := parseURI(first)
	if err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	return &Opener{first: u, root: urlpath.Root(u.Path), opts: opts}, nil
}

// Open opens the export name (a URI on the opener's server, under its root).
func (o *Opener) Open(ctx context.Context, name string) (vfs.Source, error) {
	u, err := parseURI(name)
	if err != nil {
		return nil, err
	}
	if u.Scheme != o.first.Scheme || u.Host != o.first.Host || u.Query().Get("socket") != o.first.Query().Get("socket") {
		return nil, fmt.Errorf("nbd: open %s: not on the server of %s: %w", u.Redacted(), o.first.Redacted(), vfs.ErrChain)
	}
	if !urlpath.Under(u.Path, o.root) {
		return nil, fmt.Errorf("nbd: open %s: outside %s: %w", u.Redacted(), o.root, vfs.ErrChain)
	}
	return Open(ctx, name, o.opts)
}

// Resolve resolves rel against the export name of base.
func (o *Opener) Resolve(base, rel string) (string, error) {
	b, err := parseURI(base)
	if err != nil {
		return "", err
	}
	u, err := urlpath.Resolve(b, rel, o.root)
	if err != nil {
		return "", fmt.Errorf("nbd: named in %s: %w", b.Redacted(), err)
	}
	return u.String(), nil
}

// Stats returns what the exports opened through this opener fetched.
func (o *Opener) Stats() stats.Snapshot { return o.opts.Stats.Snapshot() }

// Close releases nothing: each source owns its connections.
func (o *Opener) Close() error { return nil }
