package nbdsrc

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/h2kvm/h2kvm/internal/libnbd"
	"github.com/h2kvm/h2kvm/vfs"
	"github.com/h2kvm/h2kvm/vfs/source/internal/urlpath"
	"github.com/h2kvm/h2kvm/vfs/source/retry"
	"github.com/h2kvm/h2kvm/vfs/source/stats"
)

// Defaults for zero Options fields.
const (
	DefaultConns        = 4
	DefaultStallTimeout = 60 * time.Second
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
	if o.Conns <= 0 {
		o.Conns = DefaultConns
	}
	if o.StallTimeout <= 0 {
		o.StallTimeout = DefaultStallTimeout
	}
	if o.Stats == nil {
		o.Stats = new(stats.Counter)
	}
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
	uri   string
	name  string
	size  int64
	opts  Options
	sem   chan struct{} // one token per connection in use or idle
	lost  atomic.Int64  // connections dropped and not yet replaced
	chunk int

	mu     sync.Mutex // guards below; never held during I/O
	idle   []*libnbd.Handle
	closed bool
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
	s := &Source{uri: uri, name: u.Redacted(), opts: opts, sem: make(chan struct{}, opts.Conns), chunk: maxRequest}
	var h *libnbd.Handle
	err = retry.Do(ctx, opts.Retry, opts.Stats, func(ctx context.Context, attempt int) error {
		var err error
		h, err = s.dial(ctx)
		return err
	})
	if err != nil {
		if ctx.Err() != nil && err == ctx.Err() {
			return nil, err
		}
		return nil, fmt.Errorf("nbd: open %s: %w", s.name, err)
	}
	if s.size, err = h.Size(); err != nil {
		h.Close()
		return nil, fmt.Errorf("nbd: open %s: %w", s.name, err)
	}
	if mx, err := h.BlockSize(libnbd.SizeMaximum); err == nil && mx > 0 && mx < int64(s.chunk) {
		s.chunk = int(mx)
	}
	s.idle = append(s.idle, h) // idle connections hold no token
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
		return nil, retry.Transient(err)
	}
	if s.size > 0 {
		if size, err := h.Size(); err != nil || size != s.size {
			h.Close()
			return nil, fmt.Errorf("export size changed from %d to %d (%v)", s.size, size, err)
		}
	}
	if s.lost.Load() > 0 {
		s.lost.Add(-1)
		s.opts.Stats.AddReconnect()
	}
	return h, nil
}

// get returns an idle connection or a new one, waiting while Conns are busy.
func (s *Source) get(ctx context.Context) (*libnbd.Handle, error) {
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		<-s.sem
		return nil, fmt.Errorf("source closed")
	}
	if n := len(s.idle); n > 0 {
		h := s.idle[n-1]
		s.idle = s.idle[:n-1]
		s.mu.Unlock()
		return h, nil
	}
	s.mu.Unlock()
	h, err := s.dial(ctx)
	if err != nil {
		<-s.sem
		return nil, err
	}
	return h, nil
}

// put returns a connection to the pool, or drops it when it is no longer usable.
func (s *Source) put(h *libnbd.Handle, usable bool) {
	if usable && h.Alive() {
		s.mu.Lock()
		if !s.closed {
			s.idle = append(s.idle, h)
			s.mu.Unlock()
			<-s.sem
			return
		}
		s.mu.Unlock()
	} else {
		s.lost.Add(1)
	}
	h.Close()
	<-s.sem
}

// ReadAt reads len(p) bytes at off (fewer, with io.EOF, at the end of the export).
func (s *Source) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	want, eof := vfs.ClipRead(s.size, off, len(p))
	if want == 0 {
		if errors.Is(eof, vfs.ErrOutOfRange) {
			return 0, fmt.Errorf("nbd: %s: %w", s.name, eof)
		}
		return 0, eof
	}
	for done := 0; done < want; {
		n := min(want-done, s.chunk)
		err := retry.Do(ctx, s.opts.Retry, s.opts.Stats, func(ctx context.Context, attempt int) error {
			return s.pread(ctx, p[done:done+n], off+int64(done))
		})
		if err != nil {
			if ctx.Err() != nil && err == ctx.Err() {
				return done, err
			}
			return done, fmt.Errorf("nbd: %s: read %d bytes at offset %d: %w", s.name, n, off+int64(done), err)
		}
		done += n
	}
	return want, eof
}

// pread makes one attempt on one connection.
func (s *Source) pread(ctx context.Context, p []byte, off int64) error {
	h, err := s.get(ctx)
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, s.opts.StallTimeout)
	s.opts.Stats.AddRequest()
	err = h.Pread(rctx, p, off)
	stalled := rctx.Err() != nil
	cancel()
	if err == nil {
		s.opts.Stats.AddBytes(int64(len(p)))
		s.put(h, true)
		return nil
	}
	alive := h.Alive()
	s.put(h, alive)
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case stalled:
		return retry.Transient(fmt.Errorf("no reply within %s", s.opts.StallTimeout))
	case !alive:
		return retry.Transient(err) // connection lost: retry on a new one
	}
	var le *libnbd.Error
	if errors.As(err, &le) {
		switch le.Errno {
		case syscall.EIO, syscall.ENOMEM, syscall.EAGAIN, syscall.ESHUTDOWN:
			return retry.Transient(err)
		case syscall.EINVAL, syscall.EOVERFLOW, syscall.ERANGE:
			return fmt.Errorf("%w: %w", err, vfs.ErrOutOfRange)
		}
	}
	return err
}

// Size returns the export size.
func (s *Source) Size() int64 { return s.size }

// Name returns the URI.
func (s *Source) Name() string { return s.name }

// Stats returns the counter shared through this source's opener.
func (s *Source) Stats() stats.Snapshot { return s.opts.Stats.Snapshot() }

// Close disconnects idle connections; connections in use close when returned.
func (s *Source) Close() error {
	s.mu.Lock()
	idle := s.idle
	s.idle, s.closed = nil, true
	s.mu.Unlock()
	for _, h := range idle {
		_ = h.Shutdown()
		h.Close()
	}
	return nil
}

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
