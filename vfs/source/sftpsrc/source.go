package sftpsrc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os/user"
	"path"
	"strings"
	"time"

	"github.com/pkg/sftp"

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
)

// Options configure SFTP sources. Credentials are never logged nor put in names.
type Options struct {
	// User overrides the URL's user; default the local user name.
	User string
	// Password for password or keyboard-interactive authentication.
	Password string
	// KeyFile is an unencrypted private key file.
	KeyFile string
	// KnownHostsFile checks host keys; default ~/.ssh/known_hosts.
	KnownHostsFile string
	// InsecureIgnoreHostKey accepts any host key. It must be asked for explicitly.
	InsecureIgnoreHostKey bool
	// Conns is the number of open file handles per source for parallel reads.
	Conns int
	Retry retry.Policy
	// StallTimeout bounds a connect or one read; past it the connection is dropped and the
	// read retried on a new one.
	StallTimeout time.Duration
	// Stats, when set, counts what is fetched.
	Stats *stats.Counter
}

// Opener opens files of one SSH server over one SFTP session (reconnected when lost).
type Opener struct {
	d     *dialer
	first *url.URL
	root  string
}

var (
	_ vfs.Opener     = (*Opener)(nil)
	_ stats.Reporter = (*Opener)(nil)
)

func parseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("ssh: bad URL: %w", err)
	}
	if u.Scheme != "ssh" && u.Scheme != "sftp" {
		return nil, fmt.Errorf("ssh: %s: not an ssh:// URL", u.Redacted())
	}
	if _, set := u.User.Password(); set {
		return nil, fmt.Errorf("ssh: %s: a password in the URL is not allowed; pass it through the environment or a file", u.Redacted())
	}
	if u.Hostname() == "" || u.Path == "" {
		return nil, fmt.Errorf("ssh: %s: need ssh://[user@]host[:port]/path", u.Redacted())
	}
	return u, nil
}

// NewOpener prepares an opener for the server of first (ssh://[user@]host[:port]/path). It
// connects lazily, on the first Open. Names may not leave the first file's folder, or
// /vmfs/volumes/ when the first file lies there (ESXi parent hints name other datastores).
func NewOpener(first string, opts Options) (*Opener, error) {
	u, err := parseURL(first)
	if err != nil {
		return nil, err
	}
	fetch.Defaults(&opts.Conns, &opts.StallTimeout, &opts.Stats)
	name := opts.User
	if name == "" && u.User != nil {
		name = u.User.Username()
	}
	if name == "" {
		if cu, err := user.Current(); err == nil {
			name = cu.Username
		}
	}
	port := u.Port()
	if port == "" {
		port = "22"
	}
	d, err := newDialer(net.JoinHostPort(u.Hostname(), port), name, opts)
	if err != nil {
		return nil, err
	}
	root := urlpath.Root(u.Path)
	if strings.HasPrefix(path.Clean(u.Path), "/vmfs/volumes/") {
		root = "/vmfs/volumes/"
	}
	return &Opener{d: d, first: u, root: root}, nil
}

// Open opens name (an ssh:// URL on the opener's server, under its root) and learns its size.
func (o *Opener) Open(ctx context.Context, name string) (vfs.Source, error) {
	u, err := parseURL(name)
	if err != nil {
		return nil, err
	}
	if u.Host != o.first.Host {
		return nil, fmt.Errorf("ssh: open %s: not on %s: %w", u.Redacted(), o.first.Host, vfs.ErrChain)
	}
	if !urlpath.Under(u.Path, o.root) {
		return nil, fmt.Errorf("ssh: open %s: outside %s: %w", u.Redacted(), o.root, vfs.ErrChain)
	}
	s := &Source{d: o.d, path: path.Clean(u.Path), name: u.Redacted()}
	err = fetch.Open(ctx, "ssh", s.name, o.d.opts.Retry, o.d.opts.Stats, func(ctx context.Context) error {
		sess, err := o.d.get(ctx)
		if err != nil {
			return err
		}
		fi, err := sess.sftp.Stat(s.path)
		if err != nil {
			return o.d.classify(sess, err)
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("not a regular file (%s)", fi.Mode())
		}
		s.size = fi.Size()
		return nil
	})
	if err != nil {
		return nil, err
	}
	// The session dialer counts reconnects; a handle dropped with its session is not one more.
	s.pool = fetch.NewPool(fetch.PoolConfig[handle]{Size: o.d.opts.Conns, Dial: s.openHandle, Close: closeHandle,
		Reusable: func(h handle) bool { return h.sess == o.d.current() }})
	s.r = fetch.Reader{Subsystem: "ssh", Name: s.name, Size: s.size, Retry: o.d.opts.Retry, Stats: o.d.opts.Stats, Fetch: s.read}
	return s, nil
}

// classify turns an SFTP error into a permanent or transient one; a connection-level error
// drops the session so the retry reconnects.
func (d *dialer) classify(sess *session, err error) error {
	var se *sftp.StatusError
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w: %w", err, vfs.ErrNotFound)
	case errors.Is(err, fs.ErrPermission):
		return err
	case errors.As(err, &se):
		if se.FxCode() == sftp.ErrSSHFxConnectionLost || se.FxCode() == sftp.ErrSSHFxNoConnection {
			d.drop(sess)
		}
		if se.FxCode() == sftp.ErrSSHFxFailure || se.FxCode() == sftp.ErrSSHFxConnectionLost || se.FxCode() == sftp.ErrSSHFxNoConnection {
			return retry.Transient(err)
		}
		return err
	}
	// Anything else (EOF, reset, closed) means the connection is gone.
	d.drop(sess)
	return retry.Transient(err)
}

// Resolve resolves rel against base's folder, under the opener's root.
func (o *Opener) Resolve(base, rel string) (string, error) {
	b, err := parseURL(base)
	if err != nil {
		return "", err
	}
	u, err := urlpath.Resolve(b, rel, o.root)
	if err != nil {
		return "", fmt.Errorf("ssh: named in %s: %w", b.Redacted(), err)
	}
	u.User = b.User
	return u.String(), nil
}

// Stats returns what the files opened through this opener fetched.
func (o *Opener) Stats() stats.Snapshot { return o.d.opts.Stats.Snapshot() }

// Close closes the SSH connection. Sources opened through o must not be used after.
func (o *Opener) Close() error {
	o.d.close()
	return nil
}

// Source is one remote file read over SFTP with a small pool of open handles.
type Source struct {
	// set once
	d    *dialer
	path string
	name string
	size int64
	pool *fetch.Pool[handle]
	r    fetch.Reader
}

// handle is an open remote file of one session.
type handle struct {
	f    *sftp.File
	sess *session
}

var (
	_ vfs.Source     = (*Source)(nil)
	_ stats.Reporter = (*Source)(nil)
)

// openHandle opens the file on the current session (dialing one when there is none).
func (s *Source) openHandle(ctx context.Context) (handle, error) {
	sess, err := s.d.get(ctx)
	if err != nil {
		return handle{}, err
	}
	f, err := sess.sftp.Open(s.path)
	if err != nil {
		return handle{}, s.d.classify(sess, err)
	}
	return handle{f: f, sess: sess}, nil
}

// closeHandle closes h in the background: the close may block on a dead connection.
func closeHandle(h handle) { go h.f.Close() }

// ReadAt reads len(p) bytes at off (fewer, with io.EOF, at the end of the file).
func (s *Source) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	return s.r.ReadAt(ctx, p, off)
}

type result struct {
	n   int
	err error
}

// read makes one attempt. The read runs into a private buffer so that a cancelled or stalled
// attempt can return at once while the abandoned read finishes on its own.
func (s *Source) read(ctx context.Context, p []byte, off int64) (int, error) {
	h, err := s.pool.Get(ctx)
	if err != nil {
		return 0, err
	}
	buf := make([]byte, len(p))
	done := make(chan result, 1)
	s.d.opts.Stats.AddRequest()
	go func() {
		n, err := h.f.ReadAt(buf, off)
		done <- result{n, err}
	}()
	t := time.NewTimer(s.d.opts.StallTimeout)
	defer t.Stop()
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		go func() { <-done; s.pool.Put(h) }()
		return 0, ctx.Err()
	case <-t.C:
		// A stalled connection: drop it so every reader on it reconnects.
		s.d.drop(h.sess)
		go func() { <-done; s.pool.Drop(h) }()
		return 0, retry.Transient(fmt.Errorf("no data within %s", s.d.opts.StallTimeout))
	}
	if r.n == len(p) {
		copy(p, buf)
		s.pool.Put(h)
		return len(p), nil
	}
	if r.err == nil || r.err == io.EOF {
		s.pool.Put(h)
		return 0, fmt.Errorf("file ends at %d, before the %d bytes it had when opened (changed?): %w", off+int64(r.n), s.size, vfs.ErrTruncated)
	}
	s.pool.Drop(h)
	return 0, s.d.classify(h.sess, r.err)
}

// Size returns the size the file had when opened.
func (s *Source) Size() int64 { return s.size }

// Name returns the URL without password.
func (s *Source) Name() string { return s.name }

// Stats returns the counter shared through this source's opener.
func (s *Source) Stats() stats.Snapshot { return s.d.opts.Stats.Snapshot() }

// Close closes the idle handles; handles in use close when their read ends.
func (s *Source) Close() error { return s.pool.Close() }
