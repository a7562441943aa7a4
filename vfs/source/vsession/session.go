package vsession

// Locks: Session.mu and cookieCatcher.mu are never held together, nor during I/O.

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
	"golang.org/x/sync/singleflight"

	"github.com/h2kvm/h2kvm/vfs/source/httpsrc"
	"github.com/h2kvm/h2kvm/vfs/source/retry"
	"github.com/h2kvm/h2kvm/vfs/source/stats"
)

// Config says where and how to log in.
type Config struct {
	// Host is the vSphere server (vCenter or ESXi) as host[:port].
	Host string
	// Scheme is "https" (the default) or "http".
	Scheme string
	// User and Password are the credentials. The password is never logged nor put in an error.
	User, Password string
	// Cookie, when set, is a session cookie kept from an earlier login: Login adopts it when
	// the server still knows the session and logs in with User and Password otherwise.
	Cookie string
	// TLS is the certificate policy, used when Transport is nil.
	TLS httpsrc.TLSOptions
	// Transport, when set, carries the SOAP calls (share it with the range requests that the
	// session authorizes so that both follow one TLS policy).
	Transport http.RoundTripper
	// Timeout bounds each SOAP call; 0 leaves the bound to the context.
	Timeout time.Duration
	// Retry bounds the retries of one login after transient failures.
	Retry retry.Policy
	// Stats, when set, counts re-logins as reconnects.
	Stats *stats.Counter
	// KeepAlive, when positive, is the interval of the cheap call (Check) that keeps the
	// session from idling out and logs in again when it is gone.
	KeepAlive time.Duration
}

// Session is one vSphere login. See the package doc for its contract.
type Session struct {
	// set once
	sdk            *url.URL
	user, password string
	rt             http.RoundTripper
	timeout        time.Duration
	policy         retry.Policy
	stats          *stats.Counter
	sf             singleflight.Group
	stopKeepAlive  context.CancelFunc // ends the keep-alive and its check in flight
	done           chan struct{}      // closed when the keep-alive has ended

	mu     sync.Mutex // guards below; never held during I/O
	cookie string
	gen    uint64
	client *vim25.Client
	closed bool
}

var _ httpsrc.Authorizer = (*Session)(nil)

// Login logs in to cfg.Host (adopting cfg.Cookie when the server still knows it) and starts
// the keep-alive when cfg.KeepAlive is positive.
func Login(ctx context.Context, cfg Config) (*Session, error) {
	if cfg.Host == "" {
		return nil, fmt.Errorf("login: no vSphere host given")
	}
	scheme := cfg.Scheme
	if scheme == "" {
		scheme = "https"
	}
	rt := cfg.Transport
	if rt == nil {
		t, err := httpsrc.NewTransport(cfg.TLS)
		if err != nil {
			return nil, fmt.Errorf("login to %s: %w", cfg.Host, err)
		}
		rt = t
	}
	s := &Session{
		sdk:      &url.URL{Scheme: scheme, Host: cfg.Host, Path: "/sdk"},
		user:     cfg.User,
		password: cfg.Password,
		rt:       rt,
		timeout:  cfg.Timeout,
		policy:   cfg.Retry,
		stats:    cfg.Stats,
		done:     make(chan struct{}),
	}
	if cfg.Cookie == "" || !s.adopt(ctx, cfg.Cookie) {
		if s.user == "" || s.password == "" {
			return nil, fmt.Errorf("login to %s: %w", cfg.Host, ErrNoCredentials)
		}
		if err := s.login(ctx); err != nil {
			return nil, err
		}
	}
	kctx, cancel := context.WithCancel(context.Background())
	s.stopKeepAlive = cancel
	if cfg.KeepAlive > 0 {
		go s.keepAlive(kctx, cfg.KeepAlive)
	} else {
		close(s.done)
	}
	return s, nil
}

// Host is the server's host[:port].
func (s *Session) Host() string { return s.sdk.Host }

// User is the user the session belongs to.
func (s *Session) User() string { return s.user }

// Transport is the round tripper the SOAP calls use (for requests that follow the same TLS
// policy and share its connections).
func (s *Session) Transport() http.RoundTripper { return s.rt }

// Client returns the SOAP client of the current login. A renewal replaces it: long-lived users
// call Client again rather than keep the result.
func (s *Session) Client() *vim25.Client {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.client
}

// Cookie returns the session cookie value of the current login.
func (s *Session) Cookie() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cookie
}

// Gen returns the generation of the current login: 1 after Login, one more per renewal.
func (s *Session) Gen() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gen
}

// Authorize adds the session cookie to req and returns the generation it belongs to.
func (s *Session) Authorize(ctx context.Context, req *http.Request) (uint64, error) {
	s.mu.Lock()
	c, g := s.cookie, s.gen
	s.mu.Unlock()
	req.AddCookie(&http.Cookie{Name: soap.SessionCookieName, Value: c})
	return g, nil
}

// Renew logs in again unless a login newer than gen happened already. Concurrent callers share
// one login. After Logout it returns ErrClosed.
func (s *Session) Renew(ctx context.Context, gen uint64) error {
	if cur, closed := s.state(); closed {
		return fmt.Errorf("login to %s as %s: %w", s.sdk.Host, s.user, ErrClosed)
	} else if cur != gen {
		return nil
	}
	_, err, _ := s.sf.Do("login", func() (any, error) {
		// A login that ended between the check above and this call has renewed gen already.
		if cur, _ := s.state(); cur != gen {
			return nil, nil
		}
		return nil, s.login(ctx)
	})
	return err
}

func (s *Session) state() (gen uint64, closed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gen, s.closed
}

// Check asks the server whether the session lives and logs in again when it does not.
func (s *Session) Check(ctx context.Context) error {
	s.mu.Lock()
	c, g := s.client, s.gen
	s.mu.Unlock()
	us, err := session.NewManager(c).UserSession(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("session check on %s: %w", s.sdk.Host, err)
	}
	if us == nil {
		return s.Renew(ctx, g)
	}
	return nil
}

// Logout stops the keep-alive and ends the session on the server. It is idempotent.
func (s *Session) Logout(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	c := s.client
	s.mu.Unlock()
	s.stopKeepAlive()
	<-s.done
	if err := session.NewManager(c).Logout(ctx); err != nil {
		return fmt.Errorf("logout from %s: %w", s.sdk.Host, err)
	}
	return nil
}

// keepAlive checks the session every interval until Logout cancels ctx.
func (s *Session) keepAlive(ctx context.Context, every time.Duration) {
	defer close(s.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			cctx, cancel := context.WithTimeout(ctx, every)
			_ = s.Check(cctx) // a failure is met again by the next check or request
			cancel()
		}
	}
}

// newSOAP returns a SOAP client of its own (no cookie yet) over the session's transport.
func (s *Session) newSOAP(rt http.RoundTripper) *soap.Client {
	sc := soap.NewClient(s.sdk, false)
	sc.Client.Transport = rt
	sc.Client.Timeout = s.timeout
	return sc
}

// adopt installs a saved cookie and keeps it when the server still knows the session.
func (s *Session) adopt(ctx context.Context, cookie string) bool {
	vc, err := vim25.NewClient(ctx, s.newSOAP(s.rt))
	if err != nil {
		return false
	}
	vc.Jar.SetCookies(vc.URL(), []*http.Cookie{{Name: soap.SessionCookieName, Value: cookie, Path: "/"}})
	if us, err := session.NewManager(vc).UserSession(ctx); err != nil || us == nil {
		return false
	}
	s.mu.Lock()
	s.cookie, s.client, s.gen = cookie, vc, s.gen+1
	s.mu.Unlock()
	return true
}

// login logs in on a fresh SOAP client (a server refuses a login over a live session) and
// records its client and cookie as the next generation.
func (s *Session) login(ctx context.Context) error {
	var c *vim25.Client
	catcher := &cookieCatcher{rt: s.rt}
	err := retry.Do(ctx, s.policy, s.stats, func(ctx context.Context, attempt int) error {
		vc, err := vim25.NewClient(ctx, s.newSOAP(catcher))
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
		return fmt.Errorf("login to %s as %s: %w", s.sdk.Host, s.user, err)
	}
	cookie := catcher.get()
	if cookie == "" {
		if h := c.SessionCookie(); h != nil {
			cookie = h.Value
		}
	}
	if cookie == "" {
		return fmt.Errorf("login to %s as %s: the server set no %s cookie", s.sdk.Host, s.user, soap.SessionCookieName)
	}
	s.mu.Lock()
	closed := s.closed
	if !closed {
		s.cookie, s.client = cookie, c
		if s.gen > 0 {
			s.stats.AddReconnect()
		}
		s.gen++
	}
	s.mu.Unlock()
	if closed {
		// Logout ran during this login: end the new session too rather than leak it.
		_ = session.NewManager(c).Logout(context.WithoutCancel(ctx))
		return fmt.Errorf("login to %s as %s: %w", s.sdk.Host, s.user, ErrClosed)
	}
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
