package vsession

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"

	"github.com/h2kvm/h2kvm/internal/testenv"
	"github.com/h2kvm/h2kvm/vfs"
	"github.com/h2kvm/h2kvm/vfs/source/httpsrc"
	"github.com/h2kvm/h2kvm/vfs/source/retry"
	"github.com/h2kvm/h2kvm/vfs/source/stats"
)

const (
	testUser = "migrator@vsphere.local"
	testPass = "s3cret-Pass"
)

var fastRetry = retry.Policy{Attempts: 3, BaseDelay: 5 * time.Millisecond, MaxDelay: 20 * time.Millisecond, MaxElapsed: 10 * time.Second}

// server is a vcsim instance with an observer: a session of its own, opened with plain govmomi,
// that sees the server's list of sessions and terminates the code under test's.
type server struct {
	sim      *testenv.VCSim
	observer *govmomi.Client
}

func startServer(t *testing.T) *server {
	t.Helper()
	sim := testenv.StartVCSim(t, testUser, testPass)
	u := &url.URL{Scheme: "https", Host: sim.Host(), Path: "/sdk", User: url.UserPassword(testUser, testPass)}
	oc, err := govmomi.NewClient(context.Background(), u, true)
	if err != nil {
		t.Fatal(err)
	}
	return &server{sim: sim, observer: oc}
}

func (s *server) config() Config {
	return Config{Host: s.sim.Host(), User: testUser, Password: testPass, Retry: fastRetry,
		TLS: httpsrc.TLSOptions{Thumbprints: []string{s.sim.Thumbprint}}}
}

// sessions returns the keys of the sessions the server holds, the observer's left out.
func (s *server) sessions(t *testing.T) []string {
	t.Helper()
	ctx := context.Background()
	var sm mo.SessionManager
	if err := property.DefaultCollector(s.observer.Client).RetrieveOne(ctx, *s.observer.ServiceContent.SessionManager, []string{"sessionList", "currentSession"}, &sm); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, us := range sm.SessionList {
		if us.Key != sm.CurrentSession.Key {
			keys = append(keys, us.Key)
		}
	}
	return keys
}

// terminate ends the session whose cookie is cookie, as an administrator would.
func (s *server) terminate(t *testing.T, cookie string) {
	t.Helper()
	key := s.keyOf(t, cookie)
	if key == "" {
		t.Fatal("the session to terminate is not live")
	}
	if err := session.NewManager(s.observer.Client).TerminateSession(context.Background(), []string{key}); err != nil {
		t.Fatal(err)
	}
}

// keyOf returns the key of the live session a cookie belongs to ("" if none), asked through a
// client of its own that holds only that cookie.
func (s *server) keyOf(t *testing.T, cookie string) string {
	t.Helper()
	ctx := context.Background()
	rt, err := httpsrc.NewTransport(httpsrc.TLSOptions{Thumbprints: []string{s.sim.Thumbprint}})
	if err != nil {
		t.Fatal(err)
	}
	sc := soap.NewClient(&url.URL{Scheme: "https", Host: s.sim.Host(), Path: "/sdk"}, false)
	sc.Client.Transport = rt
	vc, err := vim25.NewClient(ctx, sc)
	if err != nil {
		t.Fatal(err)
	}
	vc.Jar.SetCookies(vc.URL(), []*http.Cookie{{Name: soap.SessionCookieName, Value: cookie, Path: "/"}})
	us, err := session.NewManager(vc).UserSession(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if us == nil {
		return ""
	}
	return us.Key
}

// login logs in with cfg and logs out when the test ends.
func login(t *testing.T, cfg Config) *Session {
	t.Helper()
	sess, err := Login(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Logout(context.Background()) })
	return sess
}

func TestLogin(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	sess := login(t, s.config())
	if sess.Gen() != 1 || sess.Host() != s.sim.Host() || sess.User() != testUser {
		t.Fatalf("gen %d host %s user %s", sess.Gen(), sess.Host(), sess.User())
	}
	// The SOAP client is logged in as the user.
	us, err := session.NewManager(sess.Client()).UserSession(ctx)
	if err != nil || us == nil || us.UserName != testUser {
		t.Fatalf("user session %+v, %v", us, err)
	}
	// The cookie Authorize sends is that very session on the server.
	req, _ := http.NewRequest("GET", "https://"+s.sim.Host()+"/folder/x", nil)
	gen, err := sess.Authorize(ctx, req)
	if err != nil || gen != 1 {
		t.Fatalf("authorize: gen %d, %v", gen, err)
	}
	c, err := req.Cookie(soap.SessionCookieName)
	if err != nil || c.Value != sess.Cookie() {
		t.Fatalf("request cookie %v, %v; session cookie %q", c, err, sess.Cookie())
	}
	if got := s.keyOf(t, c.Value); got != us.Key {
		t.Fatalf("the cookie belongs to session %q, the client to %q", got, us.Key)
	}
	if keys := s.sessions(t); len(keys) != 1 || keys[0] != us.Key {
		t.Fatalf("server sessions %v, want only %s", keys, us.Key)
	}
}

func TestWrongPassword(t *testing.T) {
	s := startServer(t)
	cfg := s.config()
	cfg.Password = "Wrong-Hunter2"
	_, err := Login(context.Background(), cfg)
	if !errors.Is(err, ErrLoginRefused) || !strings.Contains(err.Error(), "login to "+s.sim.Host()+" as "+testUser) {
		t.Fatalf("want a refused login naming host and user, got %v", err)
	}
	if strings.Contains(err.Error(), "Hunter2") {
		t.Fatalf("password in error: %v", err)
	}
	if errors.Is(err, vfs.ErrTransient) {
		t.Fatalf("refused login marked transient (retried): %v", err)
	}
	if keys := s.sessions(t); len(keys) != 0 {
		t.Fatalf("server sessions %v after a refused login", keys)
	}
	t.Log(err)
}

func TestNoCredentials(t *testing.T) {
	s := startServer(t)
	cfg := s.config()
	cfg.Password = ""
	if _, err := Login(context.Background(), cfg); !errors.Is(err, ErrNoCredentials) {
		t.Fatalf("no password: %v", err)
	}
}

func TestCertificate(t *testing.T) {
	s := startServer(t)
	cfg := s.config()
	cfg.TLS = httpsrc.TLSOptions{}
	_, err := Login(context.Background(), cfg)
	var ce *httpsrc.CertError
	if !errors.As(err, &ce) || ce.SHA256 != s.sim.Thumbprint || errors.Is(err, vfs.ErrTransient) {
		t.Fatalf("want a permanent certificate error naming the thumbprint, got %v", err)
	}
	cfg.TLS = httpsrc.TLSOptions{Thumbprints: []string{httpsrc.ThumbprintSHA1(s.sim.Server.Certificate().Raw)}}
	login(t, cfg) // a SHA-1 pin
}

func TestRenewAfterTerminate(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	cfg := s.config()
	cfg.Stats = new(stats.Counter)
	sess := login(t, cfg)
	old := sess.Cookie()
	// A live session is left alone.
	if err := sess.Check(ctx); err != nil || sess.Gen() != 1 {
		t.Fatalf("check of a live session: gen %d, %v", sess.Gen(), err)
	}
	s.terminate(t, old)
	if err := sess.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if sess.Gen() != 2 || sess.Cookie() == old || cfg.Stats.Snapshot().Reconnects != 1 {
		t.Fatalf("after terminate and check: gen %d, cookie changed %v, stats %+v", sess.Gen(), sess.Cookie() != old, cfg.Stats.Snapshot())
	}
	key := s.keyOf(t, sess.Cookie())
	if keys := s.sessions(t); key == "" || len(keys) != 1 || keys[0] != key {
		t.Fatalf("server sessions %v, want only the renewed %q", keys, key)
	}
	if us, err := session.NewManager(sess.Client()).UserSession(ctx); err != nil || us == nil || us.Key != key {
		t.Fatalf("client after renewal: %+v, %v", us, err)
	}
	// A renewal for an old generation is a no-op.
	if err := sess.Renew(ctx, 1); err != nil || sess.Gen() != 2 || len(s.sessions(t)) != 1 {
		t.Fatalf("renew of a stale generation: gen %d, sessions %v, %v", sess.Gen(), s.sessions(t), err)
	}
}

func TestConcurrentRenewCollapses(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	cfg := s.config()
	cfg.Stats = new(stats.Counter)
	sess := login(t, cfg)
	s.terminate(t, sess.Cookie())
	// Many range requests refused with the same generation at once.
	gen := sess.Gen()
	start := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs <- sess.Renew(ctx, gen)
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if sess.Gen() != gen+1 || cfg.Stats.Snapshot().Reconnects != 1 {
		t.Fatalf("32 renewals of generation %d: now generation %d, stats %+v; want one login", gen, sess.Gen(), cfg.Stats.Snapshot())
	}
	if keys := s.sessions(t); len(keys) != 1 || keys[0] != s.keyOf(t, sess.Cookie()) {
		t.Fatalf("server sessions %v, want the one renewed session", keys)
	}
}

func TestKeepAliveRenewsTerminatedSession(t *testing.T) {
	s := startServer(t)
	cfg := s.config()
	cfg.KeepAlive = 20 * time.Millisecond
	sess := login(t, cfg)
	s.terminate(t, sess.Cookie())
	for deadline := time.Now().Add(10 * time.Second); sess.Gen() == 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("keep-alive did not log in again after the session was terminated")
		}
	}
	if s.keyOf(t, sess.Cookie()) == "" {
		t.Fatal("the renewed cookie is not a live session")
	}
}

func TestLogout(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	cfg := s.config()
	cfg.KeepAlive = 10 * time.Millisecond
	sess, err := Login(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	cookie := sess.Cookie()
	if err := sess.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	if s.keyOf(t, cookie) != "" || len(s.sessions(t)) != 0 {
		t.Fatalf("session still live after logout: sessions %v", s.sessions(t))
	}
	if err := sess.Logout(ctx); err != nil {
		t.Fatalf("second logout: %v", err)
	}
	// A refused request after logout does not log in again (nor does the stopped keep-alive).
	if err := sess.Renew(ctx, sess.Gen()); !errors.Is(err, ErrClosed) {
		t.Fatalf("renew after logout: %v", err)
	}
	time.Sleep(50 * time.Millisecond)
	if keys := s.sessions(t); len(keys) != 0 || sess.Gen() != 1 {
		t.Fatalf("after logout: sessions %v, gen %d", keys, sess.Gen())
	}
}

func TestAdoptSavedCookie(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	first, err := Login(ctx, s.config())
	if err != nil {
		t.Fatal(err)
	}
	// A live saved cookie is adopted without the password.
	cfg := s.config()
	cfg.Password, cfg.Cookie = "", first.Cookie()
	second, err := Login(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if second.Cookie() != first.Cookie() || len(s.sessions(t)) != 1 {
		t.Fatalf("cookie %q, want %q; sessions %v", second.Cookie(), first.Cookie(), s.sessions(t))
	}
	if us, err := session.NewManager(second.Client()).UserSession(ctx); err != nil || us == nil {
		t.Fatalf("adopted client: %+v, %v", us, err)
	}
	// A dead one is not: the password is needed and checked.
	if err := first.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := Login(ctx, cfg); !errors.Is(err, ErrNoCredentials) {
		t.Fatalf("dead cookie, no password: %v", err)
	}
	cfg.Password = "wrong"
	if _, err := Login(ctx, cfg); !errors.Is(err, ErrLoginRefused) {
		t.Fatalf("dead cookie, wrong password: %v", err)
	}
	cfg.Password = testPass
	third, err := Login(ctx, cfg)
	if err != nil || third.Cookie() == first.Cookie() {
		t.Fatalf("dead cookie, right password: %v", err)
	}
	third.Logout(ctx)
}
