package daemon

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/h2kvm/h2kvm/nbdserve"
	"github.com/h2kvm/h2kvm/store"
	"github.com/h2kvm/h2kvm/vfs"
	"github.com/h2kvm/h2kvm/vfs/cache"
	"github.com/h2kvm/h2kvm/vfs/diskfmt/all"
	"github.com/h2kvm/h2kvm/vfs/fusefs"
	"github.com/h2kvm/h2kvm/vfs/source"
)

// Config configures a daemon. Only StateDir is required; a listener whose address is empty is
// not started.
type Config struct {
	// StateDir holds the store (h2kvm.db), cache files (cache/) and overlays (overlays/).
	StateDir string
	// ControlSocket is the unix socket of the control API (mode 0600).
	ControlSocket string
	// NBDSocket is the unix socket NBD clients connect to (mode 0600).
	NBDSocket string
	// NBDListen is a TCP address for NBD. Only loopback addresses are accepted unless TLS with
	// client certificates is configured (NBDTLSCert, NBDTLSKey and NBDTLSClientCA).
	NBDListen string
	// NBDTLSCert and NBDTLSKey are PEM files of the x509 certificate and key offered to NBD
	// clients (NBD_OPT_STARTTLS). With them, TCP clients must use TLS (unix-socket clients
	// may). Both or neither.
	NBDTLSCert, NBDTLSKey string
	// NBDTLSClientCA is a PEM file of the CAs whose client certificates are accepted; when set,
	// every TLS client must present one. It needs NBDTLSCert.
	NBDTLSClientCA string
	// NBDInsecureTCP serves writable exports to TCP clients without TLS (by default they are
	// refused: anyone who can reach the port could write).
	NBDInsecureTCP bool
	// NBDMaxConns caps the open NBD connections (0: nbdserve.DefaultMaxConns).
	NBDMaxConns int
	// NBDMaxBufferedBytes caps the payload bytes NBD requests in flight hold on all
	// connections together (0: nbdserve.DefaultMaxBufferedBytes).
	NBDMaxBufferedBytes int64
	// NBDWriteTimeout cuts an NBD client that does not read a reply for this long (0: the
	// nbdserve default, 2 min).
	NBDWriteTimeout time.Duration
	// MountDir, when set, is a FUSE mount showing each export as MountDir/<name>/disk.raw.
	MountDir string
	// CacheLimit bounds the bytes the caches of all remote files keep on local disk
	// (0: DefaultCacheLimit).
	CacheLimit int64
	// ChunkSize is the fetch unit of remote files (0: the cache's default).
	ChunkSize int64
	// Source holds credentials and TLS settings for remote sources.
	Source source.Config
	// Formats are the disk formats an export's source may be in, in detection order
	// (nil: all.Formats(), every format h2kvm reads).
	Formats []vfs.Format
	Logger  *slog.Logger
}

// DefaultCacheLimit is the local disk the caches may use when Config.CacheLimit is 0.
const DefaultCacheLimit = 1 << 30

// Daemon serves exports. Its methods may be called concurrently.
type Daemon struct {
	// set once by New
	cfg    Config
	log    *slog.Logger
	store  *store.Store
	nbd    *nbdserve.Server
	budget *cache.Budget
	fuse   *fusefs.FS // nil without MountDir
	ready  atomic.Bool

	mu      sync.Mutex
	exports map[string]*export // guarded by mu
	// creating and deleting hold the names of exports being created or deleted.
	creating map[string]bool         // guarded by mu
	deleting map[string]bool         // guarded by mu
	caches   map[string]*sharedCache // guarded by mu; by source location
	closed   bool                    // guarded by mu
}

// New opens the state directory, starts the FUSE mount if asked and restores the exports
// recorded by an earlier run. An export that cannot be restored is logged and left out (its
// record and overlay are kept, so a later restart may restore it).
func New(ctx context.Context, cfg Config) (*Daemon, error) {
	if cfg.StateDir == "" {
		return nil, fmt.Errorf("daemon: no state directory")
	}
	if cfg.CacheLimit <= 0 {
		cfg.CacheLimit = DefaultCacheLimit
	}
	if cfg.Formats == nil {
		cfg.Formats = all.Formats()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	for _, sub := range []string{"", "cache", "overlays"} {
		if err := os.MkdirAll(filepath.Join(cfg.StateDir, sub), 0o700); err != nil {
			return nil, fmt.Errorf("daemon: state directory: %w", err)
		}
	}
	nbdOpt, err := nbdOptions(cfg)
	if err != nil {
		return nil, err
	}
	st, err := store.Open(filepath.Join(cfg.StateDir, "h2kvm.db"), store.Options{})
	if err != nil {
		return nil, err
	}
	d := &Daemon{
		cfg:      cfg,
		log:      cfg.Logger,
		store:    st,
		nbd:      nbdserve.New(nbdOpt),
		budget:   cache.NewBudget(cfg.CacheLimit),
		exports:  map[string]*export{},
		creating: map[string]bool{},
		deleting: map[string]bool{},
		caches:   map[string]*sharedCache{},
	}
	if cfg.MountDir != "" {
		if err := os.MkdirAll(cfg.MountDir, 0o755); err != nil {
			st.Close()
			return nil, fmt.Errorf("daemon: mount point: %w", err)
		}
		d.fuse, err = fusefs.Mount(cfg.MountDir, fusefs.Options{})
		if err != nil {
			st.Close()
			return nil, fmt.Errorf("daemon: FUSE mount on %s: %w", cfg.MountDir, err)
		}
	}
	recs, err := st.Exports(ctx)
	if err != nil {
		d.Close(ctx)
		return nil, err
	}
	recorded := map[string]bool{}
	for _, rec := range recs {
		recorded[rec.Name] = true
		spec := ExportSpec{Name: rec.Name, Source: rec.Source, ReadOnly: rec.ReadOnly, KeepOverlay: rec.KeepOverlay,
			Manifest:          recordedManifest(rec),
			IgnoreCIDMismatch: rec.IgnoreCIDMismatch}
		if _, err := d.open(ctx, spec, rec.Created); err != nil {
			d.log.Error("export not restored", "export", rec.Name, "source", source.Redact(rec.Source), "err", err)
			continue
		}
		d.log.Info("export restored", "export", rec.Name, "source", source.Redact(rec.Source))
	}
	d.pruneCaches(ctx)
	d.pruneOverlays(ctx, recorded)
	return d, nil
}

// NBD returns the daemon's NBD server, for callers that serve it on listeners of their own.
func (d *Daemon) NBD() *nbdserve.Server { return d.nbd }

// Run serves the configured listeners until ctx ends, then shuts down gracefully: it stops
// accepting, drains in-flight NBD requests, flushes overlays and closes the store.
func (d *Daemon) Run(ctx context.Context) error {
	var (
		wg   sync.WaitGroup
		errc = make(chan error, 4)
		ls   []net.Listener
	)
	fail := func(err error) error {
		for _, l := range ls {
			l.Close()
		}
		d.Close(context.Background())
		return err
	}
	var httpSrv *http.Server
	if d.cfg.ControlSocket != "" {
		l, err := nbdserve.ListenUnix(d.cfg.ControlSocket)
		if err != nil {
			return fail(fmt.Errorf("daemon: control socket: %w", err))
		}
		ls = append(ls, l)
		httpSrv = &http.Server{Handler: d.controlHandler(), ReadHeaderTimeout: 10 * time.Second}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := httpSrv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("daemon: control API: %w", err)
			}
		}()
	}
	var nbdLs []net.Listener
	if d.cfg.NBDSocket != "" {
		l, err := nbdserve.ListenUnix(d.cfg.NBDSocket)
		if err != nil {
			return fail(fmt.Errorf("daemon: NBD socket: %w", err))
		}
		ls = append(ls, l)
		nbdLs = append(nbdLs, l)
	}
	if d.cfg.NBDListen != "" {
		l, err := listenTCP(d.cfg.NBDListen, d.cfg.NBDTLSClientCA != "")
		if err != nil {
			return fail(err)
		}
		ls = append(ls, l)
		nbdLs = append(nbdLs, l)
	}
	for _, l := range nbdLs {
		wg.Add(1)
		go func(l net.Listener) {
			defer wg.Done()
			if err := d.nbd.Serve(ctx, l); err != nil && !errors.Is(err, nbdserve.ErrServerClosed) {
				errc <- fmt.Errorf("daemon: NBD on %s: %w", l.Addr(), err)
			}
		}(l)
	}
	d.ready.Store(true)
	d.log.Info("serving", "control", d.cfg.ControlSocket, "nbd", d.cfg.NBDSocket, "tcp", d.cfg.NBDListen, "mount", d.cfg.MountDir)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	d.ready.Store(false)
	d.log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if httpSrv != nil {
		httpSrv.Shutdown(sctx)
	}
	if err := d.Close(sctx); err != nil && runErr == nil {
		runErr = err
	}
	for _, l := range ls {
		l.Close()
	}
	wg.Wait()
	return runErr
}

// nbdOptions are the NBD server options of cfg; the TLS files are read here, so a bad one
// fails New.
func nbdOptions(cfg Config) (nbdserve.Options, error) {
	opt := nbdserve.Options{
		Logger:            cfg.Logger,
		InsecureTCPWrites: cfg.NBDInsecureTCP,
		MaxConns:          cfg.NBDMaxConns,
		MaxBufferedBytes:  cfg.NBDMaxBufferedBytes,
		WriteTimeout:      cfg.NBDWriteTimeout,
	}
	if (cfg.NBDTLSCert == "") != (cfg.NBDTLSKey == "") {
		return opt, fmt.Errorf("daemon: NBD TLS needs both a certificate (--tls-cert) and its key (--tls-key)")
	}
	if cfg.NBDTLSCert == "" {
		if cfg.NBDTLSClientCA != "" {
			return opt, fmt.Errorf("daemon: --tls-ca needs --tls-cert and --tls-key")
		}
		return opt, nil
	}
	cert, err := tls.LoadX509KeyPair(cfg.NBDTLSCert, cfg.NBDTLSKey)
	if err != nil {
		return opt, fmt.Errorf("daemon: NBD TLS certificate %s with key %s: %w", cfg.NBDTLSCert, cfg.NBDTLSKey, err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if cfg.NBDTLSClientCA != "" {
		pem, err := os.ReadFile(cfg.NBDTLSClientCA)
		if err != nil {
			return opt, fmt.Errorf("daemon: NBD TLS client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return opt, fmt.Errorf("daemon: NBD TLS client CA %s: no PEM certificate in it", cfg.NBDTLSClientCA)
		}
		tc.ClientAuth, tc.ClientCAs = tls.RequireAndVerifyClientCert, pool
	}
	opt.TLSConfig, opt.RequireTLSOnTCP = tc, true
	return opt, nil
}

// listenTCP listens on addr, which must name a loopback address unless clientsVerified (TLS
// with client certificates).
func listenTCP(addr string, clientsVerified bool) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("daemon: --nbd-listen %q: %w", addr, err)
	}
	ips, err := net.LookupIP(host)
	if err != nil || len(ips) == 0 {
		return nil, fmt.Errorf("daemon: --nbd-listen %q: cannot resolve %s", addr, host)
	}
	for _, ip := range ips {
		if !ip.IsLoopback() && !clientsVerified {
			return nil, fmt.Errorf("daemon: --nbd-listen %q: only loopback addresses are served without TLS client certificates (--tls-cert, --tls-key, --tls-ca)", addr)
		}
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("daemon: NBD TCP listener: %w", err)
	}
	return l, nil
}

// fuseShutdownWait bounds how long Close waits for files open on the FUSE mount.
const fuseShutdownWait = 2 * time.Second

// Close stops the NBD server (draining in-flight requests), unmounts FUSE (lazily when files
// are still open after a short wait), closes every export (flushing overlays, syncing caches)
// and closes the store. Idempotent.
func (d *Daemon) Close(ctx context.Context) error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	exps := make([]*export, 0, len(d.exports))
	for _, e := range d.exports {
		exps = append(exps, e)
	}
	d.exports = map[string]*export{}
	d.mu.Unlock()

	errs := []error{d.nbd.Shutdown(ctx)}
	if d.fuse != nil {
		// A file left open on the mount (a shell, a forensic tool) must neither hold the
		// shutdown nor leave a dead mount behind: wait briefly for open files, then unmount,
		// lazily (MNT_DETACH) when still busy — fusefs.Run does that when its context has
		// ended. The devices are closed after, so no request reaches a closed device first.
		fctx, cancel := context.WithTimeout(ctx, fuseShutdownWait)
		for _, e := range exps {
			d.fuse.Remove(fctx, e.spec.Name)
		}
		cancel()
		ended, end := context.WithCancel(context.Background())
		end()
		if err := d.fuse.Run(ended); err != nil {
			errs = append(errs, fmt.Errorf("daemon: %w", err))
		}
	}
	for _, e := range exps {
		errs = append(errs, e.close(ctx, d, false))
	}
	errs = append(errs, d.store.Close())
	return errors.Join(errs...)
}
