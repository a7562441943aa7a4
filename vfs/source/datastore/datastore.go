package datastore

import (
	"context"
	"fmt"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/h2kvm/h2kvm/vfs"
	"github.com/h2kvm/h2kvm/vfs/source/httpsrc"
	"github.com/h2kvm/h2kvm/vfs/source/stats"
	"github.com/h2kvm/h2kvm/vfs/source/vsession"
)

// FolderRoot is the URL path under which a vSphere host serves datastore files.
const FolderRoot = "/folder/"

// EnvAllowPlaintext is the environment variable that allows plain http datastore URLs
// (read by the command line, which sets Options.AllowPlaintext; never read here).
const EnvAllowPlaintext = "H2KVM_ALLOW_PLAINTEXT"

// DefaultKeepAlive is the interval of the cheap call that keeps a session from idling out
// (vCenter ends idle sessions after 30 minutes by default).
const DefaultKeepAlive = 5 * time.Minute

// Options configure a datastore opener.
type Options struct {
	// HTTP holds TLS, retry, stall timeout and stats options; Auth, Root and MapAbsolute are
	// set by this package.
	HTTP httpsrc.Options
	// User is the vSphere user; when empty the URL's user is used.
	User string
	// Password is the vSphere password. It is never logged nor put in a name.
	Password string
	// AllowPlaintext allows http:// URLs, whose login and range requests carry the password
	// and the session cookie in clear. Without it they are refused with ErrPlaintext (the
	// command line sets it from H2KVM_ALLOW_PLAINTEXT=1).
	AllowPlaintext bool
	// KeepAlive is the session keep-alive interval: 0 means DefaultKeepAlive, negative none.
	KeepAlive time.Duration
	// Session, when set, is a logged-in session of the URL's host (the inventory resolver's,
	// so that one login serves both): the opener neither logs in nor out, User, Password and
	// KeepAlive are ignored, and its transport carries the range requests unless HTTP sets
	// one. Renewals after refused requests go through it and count in its own Stats.
	Session *vsession.Session
}

// IsDatastoreURL reports whether u names a datastore file: http(s)://HOST/folder/…?dsName=….
func IsDatastoreURL(u *url.URL) bool {
	return (u.Scheme == "https" || u.Scheme == "http") && strings.HasPrefix(u.Path, FolderRoot) && u.Query().Get("dsName") != ""
}

// Opener opens datastore files of one vSphere host or vCenter through one session.
type Opener struct {
	*httpsrc.Opener
	sess *vsession.Session
	own  bool // the opener logged in, so it logs out on Close

	closeOnce sync.Once
	closeErr  error
}

var (
	_ vfs.Opener     = (*Opener)(nil)
	_ stats.Reporter = (*Opener)(nil)
)

// NewOpener logs in to the server of first (a datastore URL), or takes opts.Session, and
// returns an opener for files of its datastores. Login failures are permanent; network
// failures are retried.
func NewOpener(ctx context.Context, first string, opts Options) (*Opener, error) {
	u, err := url.Parse(first)
	if err != nil {
		return nil, fmt.Errorf("datastore: bad URL: %w", err)
	}
	if !IsDatastoreURL(u) {
		return nil, fmt.Errorf("datastore: %s is not a datastore URL (https://HOST/folder/PATH?dcPath=DC&dsName=DS)", httpsrc.Redact(u))
	}
	if _, set := u.User.Password(); set {
		return nil, fmt.Errorf("datastore: %s: a password in the URL is not allowed; pass it through the environment or a file", httpsrc.Redact(u))
	}
	if u.Scheme == "http" && !opts.AllowPlaintext {
		return nil, fmt.Errorf("datastore: %s: %w; use https, or set %s=1 to allow it", httpsrc.Redact(u), ErrPlaintext, EnvAllowPlaintext)
	}
	if opts.HTTP.Stats == nil {
		opts.HTTP.Stats = new(stats.Counter)
	}
	sess, own := opts.Session, false
	if sess != nil {
		if !strings.EqualFold(sess.Host(), u.Host) {
			return nil, fmt.Errorf("datastore: %s: the session given is one of %s, not of this host", httpsrc.Redact(u), sess.Host())
		}
		if opts.HTTP.Transport == nil {
			opts.HTTP.Transport = sess.Transport()
		}
	} else {
		if sess, err = login(ctx, u, &opts); err != nil {
			return nil, err
		}
		own = true
	}
	hopts := opts.HTTP
	hopts.Auth = sess
	hopts.Root = FolderRoot
	hopts.MapAbsolute = mapVMFS
	clean := *u
	clean.User = nil
	ho, err := httpsrc.NewOpener(clean.String(), hopts)
	if err != nil {
		if own {
			logout(sess)
		}
		return nil, fmt.Errorf("datastore: %w", err)
	}
	return &Opener{Opener: ho, sess: sess, own: own}, nil
}

// login opens the opener's own session over the transport its range requests use, and sets
// that transport in opts.
func login(ctx context.Context, u *url.URL, opts *Options) (*vsession.Session, error) {
	user := opts.User
	if user == "" && u.User != nil {
		user = u.User.Username()
	}
	if user == "" || opts.Password == "" {
		return nil, fmt.Errorf("datastore: %s: a vSphere user and password are needed (user in the URL or the environment, password in the environment or a file)", httpsrc.Redact(u))
	}
	if opts.HTTP.Transport == nil {
		t, err := httpsrc.NewTransport(opts.HTTP.TLS)
		if err != nil {
			return nil, fmt.Errorf("datastore: %w", err)
		}
		opts.HTTP.Transport = t
	}
	ka := opts.KeepAlive
	if ka == 0 {
		ka = DefaultKeepAlive
	}
	sess, err := vsession.Login(ctx, vsession.Config{
		Host: u.Host, Scheme: u.Scheme, User: user, Password: opts.Password,
		Transport: opts.HTTP.Transport, Retry: opts.HTTP.Retry, Stats: opts.HTTP.Stats, KeepAlive: ka,
	})
	if err != nil {
		if ctx.Err() != nil && err == ctx.Err() {
			return nil, err
		}
		return nil, fmt.Errorf("datastore: %w", err)
	}
	return sess, nil
}

// Session is the vSphere session the opener reads with.
func (o *Opener) Session() *vsession.Session { return o.sess }

// mapVMFS maps a parent hint /vmfs/volumes/DSNAME/rest on the URL's own datastore to
// /folder/rest. Hints naming a datastore by UUID or another datastore are not mapped (and so
// refused by the root check).
func mapVMFS(base *url.URL, p string) (string, bool) {
	rest, ok := strings.CutPrefix(path.Clean(p), "/vmfs/volumes/")
	if !ok {
		return "", false
	}
	ds, file, ok := strings.Cut(rest, "/")
	if !ok || ds != base.Query().Get("dsName") {
		return "", false
	}
	return FolderRoot + file, true
}

// Close logs out when the opener logged in itself (a session given in Options stays its
// owner's). Sources opened through o must not be used after. Close is idempotent.
func (o *Opener) Close() error {
	o.closeOnce.Do(func() {
		if o.own {
			logout(o.sess)
		}
		o.closeErr = o.Opener.Close()
	})
	return o.closeErr
}

// logout ends a session, bounded in time and ignoring failures: the server ends an abandoned
// session by itself.
func logout(s *vsession.Session) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = s.Logout(ctx)
}
