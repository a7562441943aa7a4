package nbdserve

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/h2kvm/h2kvm/vfs"
)

// Options configure a Server. The zero value is usable.
type Options struct {
	// Logger receives connection and error logs; nil means slog.Default().
	Logger *slog.Logger
	// TLSConfig enables NBD_OPT_STARTTLS. Without it STARTTLS is refused with NBD_REP_ERR_POLICY.
	TLSConfig *tls.Config
	// RequireTLS refuses every option but STARTTLS and ABORT until TLS is up (FORCEDTLS mode).
	// It needs TLSConfig.
	RequireTLS bool
	// RequireTLSOnTCP is RequireTLS for the connections that are not unix sockets (which file
	// permissions guard). It needs TLSConfig.
	RequireTLSOnTCP bool
	// InsecureTCPWrites serves writable exports to clients that reach the server over TCP (any
	// connection but a unix socket) without TLS. By default such a client is refused them:
	// NBD_OPT_INFO and NBD_OPT_GO are answered NBD_REP_ERR_TLS_REQD (the protocol's
	// SELECTIVETLS mode) and NBD_OPT_EXPORT_NAME closes the connection, because NBD has no
	// authentication of its own and anybody who can connect — on loopback, every local user
	// and every guest whose user-mode network reaches the host — could write. Read-only
	// exports are served either way (unless RequireTLS or RequireTLSOnTCP).
	InsecureTCPWrites bool
	// DefaultExport is the export served to clients asking for the empty name.
	DefaultExport string
	// HandshakeTimeout bounds the whole option haggling phase; 0 means 30 s.
	HandshakeTimeout time.Duration
	// WriteTimeout bounds the sending of one reply; a client that does not read its replies for
	// this long is disconnected. 0 means 2 min.
	WriteTimeout time.Duration
	// Workers is the number of requests one connection processes at once; 0 means 16.
	Workers int
	// MaxInFlightBytes caps the READ and WRITE payload bytes held by one connection's requests
	// in flight; 0 means 64 MiB. It is raised to MaxPayload if lower.
	MaxInFlightBytes int64
	// MaxBufferedBytes caps the READ and WRITE payload bytes held by the requests in flight of
	// all connections together; 0 means DefaultMaxBufferedBytes. It is raised to MaxPayload if
	// lower. A connection whose request does not fit waits (stops reading requests) until
	// other requests finish; a client that stops reading its replies gives its share back
	// when WriteTimeout cuts it.
	MaxBufferedBytes int64
	// MaxConns caps the connections open at once (negotiating or transmitting); 0 means
	// DefaultMaxConns, negative means no limit. A connection beyond the limit is closed
	// as soon as it is accepted, before the greeting, and counted in ServerStats.Refused.
	MaxConns int
}

// Defaults of Options.
const (
	DefaultMaxBufferedBytes = 256 << 20
	DefaultMaxConns         = 64
)

// ExportOptions configure one export.
type ExportOptions struct {
	// ReadOnly refuses writes even when the device is vfs.Writable.
	ReadOnly bool
	// Description is shown to clients by NBD_OPT_LIST and NBD_INFO_DESCRIPTION.
	Description string
	// MultiConn sets NBD_FLAG_CAN_MULTI_CONN. Set it only when a FLUSH on one connection makes
	// the writes of every connection durable (one shared device). nil means: true for read-only
	// exports, false for writable ones.
	MultiConn *bool
}

// Server serves NBD exports of vfs devices. It may serve several listeners at once. All methods
// may be called concurrently.
type Server struct {
	// set once
	opt Options
	log *slog.Logger

	mu        sync.Mutex
	exports   map[string]*export    // guarded by mu
	listeners map[net.Listener]bool // guarded by mu
	conns     map[*conn]struct{}    // guarded by mu; every live connection
	closing   bool                  // guarded by mu
	done      chan struct{}         // closed by Shutdown
	connWG    sync.WaitGroup        // one per connection goroutine

	budget *budget // set once
	stats  serverCounters
}

// export is one named device.
type export struct {
	// set once
	name      string
	desc      string
	dev       vfs.Device
	w         vfs.Writable // nil for read-only exports
	multiConn bool
	fastZero  vfs.FastZeroer // nil unless writable and the device implements it
	stats     counters
}

// New returns a server with no exports.
func New(opt Options) *Server {
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	if opt.HandshakeTimeout == 0 {
		opt.HandshakeTimeout = 30 * time.Second
	}
	if opt.WriteTimeout == 0 {
		opt.WriteTimeout = 2 * time.Minute
	}
	if opt.Workers <= 0 {
		opt.Workers = 16
	}
	if opt.MaxInFlightBytes == 0 {
		opt.MaxInFlightBytes = 64 << 20
	}
	opt.MaxInFlightBytes = max(opt.MaxInFlightBytes, MaxPayload)
	if opt.MaxBufferedBytes == 0 {
		opt.MaxBufferedBytes = DefaultMaxBufferedBytes
	}
	opt.MaxBufferedBytes = max(opt.MaxBufferedBytes, MaxPayload)
	if opt.MaxConns == 0 {
		opt.MaxConns = DefaultMaxConns
	}
	return &Server{
		opt:       opt,
		log:       opt.Logger.With("subsystem", "nbd"),
		exports:   map[string]*export{},
		listeners: map[net.Listener]bool{},
		conns:     map[*conn]struct{}{},
		done:      make(chan struct{}),
		budget:    newBudget(opt.MaxBufferedBytes),
	}
}

// AddExport publishes dev under name. The device is served read-only when eo.ReadOnly is set or
// when it does not implement vfs.Writable.
func (s *Server) AddExport(name string, dev vfs.Device, eo ExportOptions) error {
	if _, err := checkString([]byte(name), "export name"); err != nil {
		return fmt.Errorf("nbd: add export: %w", err)
	}
	if _, err := checkString([]byte(eo.Description), "description"); err != nil {
		return fmt.Errorf("nbd: add export %q: %w", name, err)
	}
	if dev.Size() < 0 {
		return fmt.Errorf("nbd: add export %q: negative size %d", name, dev.Size())
	}
	e := &export{name: name, desc: eo.Description, dev: dev}
	if w, ok := dev.(vfs.Writable); ok && !eo.ReadOnly {
		e.w = w
		if fz, ok := dev.(vfs.FastZeroer); ok {
			e.fastZero = fz
		}
	}
	e.multiConn = e.w == nil
	if eo.MultiConn != nil {
		e.multiConn = *eo.MultiConn
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.exports[name]; ok {
		return fmt.Errorf("nbd: add export %q: %w", name, ErrExportExists)
	}
	s.exports[name] = e
	return nil
}

// RemoveExport unpublishes an export and closes the connections using it; their requests in
// flight are cancelled. The device is not closed.
func (s *Server) RemoveExport(name string) error {
	s.mu.Lock()
	e, ok := s.exports[name]
	delete(s.exports, name)
	var victims []*conn
	for c := range s.conns {
		if c.export() == e {
			victims = append(victims, c)
		}
	}
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("nbd: remove export %q: %w", name, ErrNoExport)
	}
	for _, c := range victims {
		c.abort()
	}
	return nil
}

// lookup returns the export a client asked for, or nil.
func (s *Server) lookup(name string) *export {
	s.mu.Lock()
	defer s.mu.Unlock()
	if name == "" && s.opt.DefaultExport != "" {
		name = s.opt.DefaultExport
	}
	return s.exports[name]
}

// exportList returns the exports sorted by name.
func (s *Server) exportList() []*export {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*export, 0, len(s.exports))
	for _, e := range s.exports {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b *export) int {
		if a.name < b.name {
			return -1
		}
		if a.name > b.name {
			return 1
		}
		return 0
	})
	return out
}

// transmissionFlags returns the flags advertised for e.
func (e *export) transmissionFlags(structured bool) uint16 {
	f := uint16(tflagHasFlags | tflagSendFlush | tflagSendCache)
	if e.w == nil {
		f |= tflagReadOnly
	} else {
		f |= tflagSendFUA | tflagSendTrim | tflagSendWriteZeroes
		if e.fastZero != nil {
			f |= tflagSendFastZero
		}
	}
	if structured {
		f |= tflagSendDF
	}
	if e.multiConn {
		f |= tflagCanMultiConn
	}
	return f
}

// Serve accepts connections on l until Shutdown is called or ctx ends; it then closes l and
// returns ErrServerClosed. Connections already accepted keep running until Shutdown (ending ctx
// does not cut them). Serve may be called for several listeners.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	s.listeners[l] = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
		l.Close()
	}()
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()

	var backoff time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing || ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return ErrServerClosed
			}
			// Temporary failures (EMFILE, ECONNABORTED): back off and retry.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("accept failed; retrying", "err", err, "backoff", backoff)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return ErrServerClosed
			}
			continue
		}
		backoff = 0
		if tc, ok := nc.(*net.TCPConn); ok {
			tc.SetNoDelay(true)
			tc.SetKeepAlive(true)
		}
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			nc.Close()
			return ErrServerClosed
		}
		if s.opt.MaxConns > 0 && len(s.conns) >= s.opt.MaxConns {
			s.mu.Unlock()
			// Closing before the greeting costs nothing and tells every client at once.
			s.stats.refused.Add(1)
			s.log.Warn("connection refused: too many connections", "remote", nc.RemoteAddr().String(), "limit", s.opt.MaxConns)
			nc.Close()
			continue
		}
		c := newConn(s, nc)
		s.conns[c] = struct{}{}
		s.connWG.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.connWG.Done()
			c.run()
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
	}
}

// Shutdown stops accepting connections, lets every connection finish the requests it has in
// flight (new requests are not read), closes them, and flushes every writable export. When ctx
// ends first, the remaining connections are cut and their requests cancelled. It returns the
// first flush error or ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.closing {
		s.closing = true
		close(s.done)
	}
	for l := range s.listeners {
		l.Close()
	}
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.drain()
	}
	waited := make(chan struct{})
	go func() { s.connWG.Wait(); close(waited) }()
	var err error
	select {
	case <-waited:
	case <-ctx.Done():
		err = fmt.Errorf("nbd: shutdown: %w", ctx.Err())
		s.mu.Lock()
		for c := range s.conns {
			c.abort()
		}
		s.mu.Unlock()
		<-waited
	}
	for _, e := range s.exportList() {
		if e.w == nil {
			continue
		}
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		if ferr := e.w.Flush(fctx); ferr != nil && err == nil {
			err = fmt.Errorf("nbd: shutdown: flush export %q: %w", e.name, ferr)
		}
		cancel()
	}
	return err
}
