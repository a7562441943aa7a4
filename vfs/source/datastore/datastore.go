package datastore

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
	"golang.org/x/sync/singleflight"

	"github.com/h2kvm/h2kvm/vfs"
	"github.com/h2kvm/h2kvm/vfs/source/httpsrc"
	"github.com/h2kvm/h2kvm/vfs/source/retry"
	"github.com/h2kvm/h2kvm/vfs/source/stats"
)

// FolderRoot is the URL path under which a vSphere host serves datastore files.
const FolderRoot = "/folder/"

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
	// KeepAlive is the session keep-alive interval: 0 means DefaultKeepAlive, negative none.
	KeepAlive time.Duration
}

// IsDatastoreURL reports whether u names a datastore file: http(s)://HOST/folder/…?dsName=….
func IsDatastoreURL(u *url.URL) bool {
	return (u.Scheme == "https" || u.Scheme == "http") && strings.HasPrefix(u.Path, FolderRoot) && u.Query().Get("dsName") != ""
}

// Opener opens datastore files of one vSphere host or vCenter through one session.
type Opener struct {
	*httpsrc.Opener
	sess *vsession

	stop chan struct{}
	done chan struct{}
}

var (
	_ vfs.Opener     = (*Opener)(nil)
	_ stats.Reporter = (*Opener)(nil)
)

// NewOpener logs in to the server of first (a datastore URL) and returns an opener for files
// of its datastores. Login failures are permanent; network failures are retried.
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
	user := opts.User
	if user == "" && u.User != nil {
		user = u.User.Username()
	}
	if user == "" || opts.Password == "" {
		return nil, fmt.Errorf("datastore: %s: a vSphere user and password are needed (user in the URL or the environment, password in the environment or a file)", httpsrc.Redact(u))
	}
	if opts.HTTP.Stats == nil {
		opts.HTTP.Stats = new(stats.Counter)
	}
	rt := opts.HTTP.Transport
	if rt == nil {
		t, err := httpsrc.NewTransport(opts.HTTP.TLS)
		if err != nil {
			return nil, fmt.Errorf("datastore: %w", err)
		}
		rt = t
		opts.HTTP.Transport = t
	}
	s := &vsession{
		sdk:      &url.URL{Scheme: u.Scheme, Host: u.Host, Path: "/sdk"},
		user:     user,
		password: opts.Password,
		rt:       rt,
		policy:   opts.HTTP.Retry,
		stats:    opts.HTTP.Stats,
	}
	if err := s.login(ctx); err != nil {
		return nil, err
	}
	hopts := opts.HTTP
	hopts.Auth = s
	hopts.Root = FolderRoot
	hopts.MapAbsolute = mapVMFS
	clean := *u
	clean.User = nil
	ho, err := httpsrc.NewOpener(clean.String(), hopts)
	if err != nil {
		s.logout()
		return nil, fmt.Errorf("datastore: %w", err)
	}
	o := &Opener{Opener: ho, sess: s, stop: make(chan struct{}), done: make(chan struct{})}
	ka := opts.KeepAlive
	if ka == 0 {
		ka = DefaultKeepAlive
	}
	if ka > 0 {
		go o.keepAlive(ka)
	} else {
		close(o.done)
	}
	return o, nil
}

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

// keepAlive makes a cheap call every interval and logs in again when the session is gone.
func (o *Opener) keepAlive(every time.Duration) {
	defer close(o.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-o.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), every)
			_ = o.sess.check(ctx)
			cancel()
		}
	}
}

// Close stops the keep-alive and logs out. Sources opened through o must not be used after.
func (o *Opener) Close() error {
	select {
	case <-o.stop:
		return nil
	default:
	}
	close(o.stop)
	<-o.done
	o.sess.logout()
	return o.Opener.Close()
}

// vsession is one vSphere login whose cookie authorizes datastore range requests.
type vsession struct {
	// set once
	sdk            *url.URL
	user, password string
	rt             http.RoundTripper
	policy         retry.Policy
	stats          *stats.Counter
	sf             singleflight.Group

	mu     sync.Mutex // guards below; never held during I/O
	cookie string
	gen    uint64
	client *vim25.Client
}

var _ httpsrc.Authorizer = (*vsession)(nil)

// Authorize adds the session cookie.
func (s *vsession) Authorize(ctx context.Context, req *http.Request) (uint64, error) {
	s.mu.Lock()
	c, g := s.cookie, s.gen
	s.mu.Unlock()
	req.AddCookie(&http.Cookie{Name: soap.SessionCookieName, Value: c})
	return g, nil
}

// Renew logs in again unless a login newer than gen happened already. Concurrent callers share
// one login.
func (s *vsession) Renew(ctx context.Context, gen uint64) error {
	s.mu.Lock()
	cur := s.gen
	s.mu.Unlock()
	if cur != gen {
		return nil
	}
	_, err, _ := s.sf.Do("login", func() (any, error) {
		s.mu.Lock()
		cur := s.gen
		s.mu.Unlock()
		if cur != gen {
			return nil, nil
		}
		return nil, s.login(ctx)
	})
	return err
}

// check asks the server whether the session lives and logs in again when it does not.
func (s *vsession) check(ctx context.Context) error {
	s.mu.Lock()
	c, g := s.client, s.gen
	s.mu.Unlock()
	us, err := session.NewManager(c).UserSession(ctx)
	if err != nil {
		return err
	}
	if us == nil {
		return s.Renew(ctx, g)
	}
	return nil
}

// login creates a SOAP client over the shared transport, logs in, and records the cookie.
func (s *vsession) login(ctx context.Context) error {
	var c *vim25.Client
	catcher := &cookieCatcher{rt: s.rt}
	err := retry.Do(ctx, s.policy, s.stats, func(ctx context.Context, attempt int) error {
		sc := soap.NewClient(s.sdk, false)
		sc.Client.Transport = catcher
		vc, err := vim25.NewClient(ctx, sc)
		if err != nil {
			return loginError(err)
		}
		if err := session.NewManager(vc).Login(ctx, url.UserPassword(s.user, s.password)); err != nil {
			return loginError(err)
		}
		c = vc
		return nil
	})
	if err != nil {
		if ctx.Err() != nil && err == ctx.Err() {
			return err
		}
		return fmt.Errorf("datastore: login to %s as %s: %w", s.sdk.Host, s.user, err)
	}
	cookie := catcher.get()
	if cookie == "" {
		if h := c.SessionCookie(); h != nil {
			cookie = h.Value
		}
	}
	if cookie == "" {
		return fmt.Errorf("datastore: login to %s as %s: the server set no %s cookie", s.sdk.Host, s.user, soap.SessionCookieName)
	}
	s.mu.Lock()
	s.cookie, s.client = cookie, c
	if s.gen > 0 {
		s.stats.AddReconnect()
	}
	s.gen++
	s.mu.Unlock()
	return nil
}

// loginError makes SOAP faults (a wrong password) permanent and network errors transient.
func loginError(err error) error {
	if fault.Is(err, &types.InvalidLogin{}) {
		return fmt.Errorf("%w (%v)", ErrLoginRefused, err)
	}
	if soap.IsSoapFault(err) || soap.IsVimFault(err) {
		return err
	}
	return httpsrc.Classify(err)
}

func (s *vsession) logout() {
	s.mu.Lock()
	c := s.client
	s.mu.Unlock()
	if c == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = session.NewManager(c).Logout(ctx)
}

// cookieCatcher records the session cookie the login response sets, whatever the scheme
// (a cookie jar would hide a Secure cookie on plain http).
type cookieCatcher struct {
	rt     http.RoundTripper
	mu     sync.Mutex
	cookie string
}

func (c *cookieCatcher) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.rt.RoundTrip(req)
	if err == nil {
		for _, ck := range resp.Cookies() {
			if ck.Name == soap.SessionCookieName {
				c.mu.Lock()
				c.cookie = ck.Value
				c.mu.Unlock()
			}
		}
	}
	return resp, err
}

func (c *cookieCatcher) get() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cookie
}
