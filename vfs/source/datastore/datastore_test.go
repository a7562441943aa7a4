package datastore

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/simulator"
	"golang.org/x/sync/errgroup"

	"github.com/h2kvm/h2kvm/internal/testenv"
	"github.com/h2kvm/h2kvm/vfs"
	"github.com/h2kvm/h2kvm/vfs/source/httpsrc"
	"github.com/h2kvm/h2kvm/vfs/source/retry"
	"github.com/h2kvm/h2kvm/vfs/source/vsession"
)

const (
	testUser = "migrator@vsphere.local"
	testPass = "s3cret-Pass"
)

var fastRetry = retry.Policy{Attempts: 3, BaseDelay: 5 * time.Millisecond, MaxDelay: 20 * time.Millisecond, MaxElapsed: 10 * time.Second}

type vcsim struct {
	model  *simulator.Model
	server *simulator.Server
	dir    string // local folder of datastore LocalDS_0
	thumb  string // SHA-256 thumbprint of the server certificate
}

// startVCSim starts an in-process vCenter simulator over TLS that only accepts testUser/testPass,
// with a real VMDK chain (qemu-img monolithicSparse base + delta with writes) in vm/ on LocalDS_0.
func startVCSim(t *testing.T) *vcsim {
	t.Helper()
	testenv.NeedTool(t, "qemu-img", "qemu-io")
	sim := testenv.StartVCSim(t, testUser, testPass)
	dir := sim.Folder(t, "vm")
	testenv.Run(t, dir, "qemu-img", "create", "-q", "-f", "vmdk", "-o", "subformat=monolithicSparse", "base.vmdk", "32M")
	testenv.Run(t, dir, "qemu-io", "-f", "vmdk", "-c", "write -P 0x11 0 1M", "-c", "write -P 0x12 20M 300k", "base.vmdk")
	testenv.Run(t, dir, "qemu-img", "create", "-q", "-f", "vmdk", "-b", "base.vmdk", "-F", "vmdk", "delta.vmdk")
	testenv.Run(t, dir, "qemu-io", "-f", "vmdk", "-c", "write -P 0x22 512k 1M", "delta.vmdk")
	return &vcsim{model: sim.Model, server: sim.Server, dir: dir, thumb: sim.Thumbprint}
}

func (v *vcsim) url(host, file string) string {
	return fmt.Sprintf("https://%s/folder/vm/%s?dcPath=DC0&dsName=LocalDS_0", host, file)
}

func (v *vcsim) opts() Options {
	return Options{User: testUser, Password: testPass,
		HTTP: httpsrc.Options{TLS: httpsrc.TLSOptions{Thumbprints: []string{v.thumb}}, Retry: fastRetry}}
}

// readAll reads a whole source with 8 parallel 256 KiB reads.
func readAll(t *testing.T, s vfs.Source) []byte {
	t.Helper()
	buf := make([]byte, s.Size())
	g, ctx := errgroup.WithContext(context.Background())
	g.SetLimit(8)
	for off := int64(0); off < s.Size(); off += 256 << 10 {
		g.Go(func() error {
			end := min(off+256<<10, s.Size())
			return vfs.ReadFull(ctx, s, buf[off:end], off)
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	return buf
}

func TestChainOverDatastore(t *testing.T) {
	v := startVCSim(t)
	ctx := context.Background()
	first := v.url(v.server.URL.Host, "delta.vmdk")
	o, err := NewOpener(ctx, first, v.opts())
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	delta, err := o.Open(ctx, first)
	if err != nil {
		t.Fatal(err)
	}
	got := readAll(t, delta)
	want, _ := os.ReadFile(filepath.Join(v.dir, "delta.vmdk"))
	if !bytes.Equal(got, want) {
		t.Fatalf("delta.vmdk: %d bytes read differ from the %d local bytes", len(got), len(want))
	}
	// The parent is named by the delta's own descriptor, read remotely.
	m := regexp.MustCompile(`parentFileNameHint="([^"]+)"`).FindSubmatch(got)
	if m == nil {
		t.Fatal("no parentFileNameHint in delta.vmdk")
	}
	pname, err := o.Resolve(first, string(m[1]))
	if err != nil {
		t.Fatal(err)
	}
	if want := v.url(v.server.URL.Host, "base.vmdk"); pname != want {
		t.Fatalf("parent resolved to %s, want %s", pname, want)
	}
	base, err := o.Open(ctx, pname)
	if err != nil {
		t.Fatal(err)
	}
	got = readAll(t, base)
	want, _ = os.ReadFile(filepath.Join(v.dir, "base.vmdk"))
	if !bytes.Equal(got, want) || len(want) < 1<<20 {
		t.Fatalf("base.vmdk: %d bytes read differ from the %d local bytes", len(got), len(want))
	}
	// VMware-style absolute hints on the same datastore map to /folder/.
	if p, err := o.Resolve(first, "/vmfs/volumes/LocalDS_0/vm/base.vmdk"); err != nil || p != pname {
		t.Fatalf("vmfs hint resolved to %q, %v", p, err)
	}
	if _, err := o.Resolve(first, "/vmfs/volumes/OtherDS/vm/base.vmdk"); !errors.Is(err, vfs.ErrChain) {
		t.Fatalf("hint on another datastore: %v", err)
	}
	if _, err := o.Resolve(first, "../../../etc/passwd"); !errors.Is(err, vfs.ErrChain) {
		t.Fatalf("escape: %v", err)
	}
	st := o.Stats()
	if st.BytesFetched != int64(len(got))+delta.Size() {
		t.Fatalf("stats %+v, want %d bytes", st, int64(len(got))+delta.Size())
	}
	if strings.Contains(delta.Name(), testPass) || strings.Contains(delta.Name(), testUser) {
		t.Fatalf("name carries credentials: %s", delta.Name())
	}
}

func TestWrongPassword(t *testing.T) {
	v := startVCSim(t)
	opts := v.opts()
	opts.Password = "wrong"
	_, err := NewOpener(context.Background(), v.url(v.server.URL.Host, "delta.vmdk"), opts)
	if !errors.Is(err, ErrLoginRefused) || !strings.Contains(err.Error(), "login to") || !strings.Contains(err.Error(), testUser) {
		t.Fatalf("want a clear login failure, got %v", err)
	}
	if strings.Contains(err.Error(), "wrong") {
		t.Fatal("password in error")
	}
	if errors.Is(err, vfs.ErrTransient) {
		t.Fatalf("login failure retried: %v", err)
	}
	t.Log(err)
}

func TestUnreachableHost(t *testing.T) {
	l := httptest.NewServer(http.NotFoundHandler())
	host := l.Listener.Addr().String()
	l.Close()
	opts := Options{User: testUser, Password: testPass, HTTP: httpsrc.Options{Retry: fastRetry}}
	start := time.Now()
	_, err := NewOpener(context.Background(), fmt.Sprintf("https://%s/folder/x.vmdk?dsName=d", host), opts)
	if !errors.Is(err, vfs.ErrTransient) || !strings.Contains(err.Error(), "gave up after 3 attempts") || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("want a connection error after retries, got %v", err)
	}
	t.Logf("%v (after %s)", err, time.Since(start))
}

func TestCertificate(t *testing.T) {
	v := startVCSim(t)
	opts := v.opts()
	opts.HTTP.TLS = httpsrc.TLSOptions{}
	_, err := NewOpener(context.Background(), v.url(v.server.URL.Host, "delta.vmdk"), opts)
	var ce *httpsrc.CertError
	if !errors.As(err, &ce) || ce.SHA256 != v.thumb {
		t.Fatalf("want a TLS certificate error naming the thumbprint, got %v", err)
	}
	t.Log(err)
	opts.HTTP.TLS = httpsrc.TLSOptions{Thumbprints: []string{httpsrc.ThumbprintSHA1(v.server.Certificate().Raw)}}
	o, err := NewOpener(context.Background(), v.url(v.server.URL.Host, "delta.vmdk"), opts)
	if err != nil {
		t.Fatalf("SHA-1 pin: %v", err)
	}
	o.Close()
}

// sessionGate is a TLS reverse proxy in front of the simulator that, like a real vSphere host,
// refuses /folder requests without a live session cookie. Sessions are the cookies it saw set
// by login responses; expire() forgets them all.
type sessionGate struct {
	*httptest.Server
	mu       sync.Mutex
	live     map[string]bool
	refusals int
}

func newSessionGate(t *testing.T, v *vcsim) *sessionGate {
	target := &url.URL{Scheme: "https", Host: v.server.URL.Host}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	g := &sessionGate{live: make(map[string]bool)}
	rp.ModifyResponse = func(resp *http.Response) error {
		for _, c := range resp.Cookies() {
			if c.Name == "vmware_soap_session" {
				g.mu.Lock()
				g.live[c.Value] = true
				g.mu.Unlock()
			}
		}
		return nil
	}
	g.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/folder/") {
			c, err := r.Cookie("vmware_soap_session")
			g.mu.Lock()
			ok := err == nil && g.live[c.Value]
			if !ok {
				g.refusals++
			}
			g.mu.Unlock()
			if !ok {
				http.Error(w, "no session", http.StatusUnauthorized)
				return
			}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(g.Close)
	return g
}

func (g *sessionGate) expire() {
	g.mu.Lock()
	clear(g.live)
	g.mu.Unlock()
}

func TestReloginOnExpiredSession(t *testing.T) {
	v := startVCSim(t)
	g := newSessionGate(t, v)
	ctx := context.Background()
	first := v.url(g.Listener.Addr().String(), "delta.vmdk")
	opts := v.opts()
	opts.HTTP.TLS = httpsrc.TLSOptions{Thumbprints: []string{httpsrc.ThumbprintSHA256(g.Certificate().Raw)}}
	o, err := NewOpener(ctx, first, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	s, err := o.Open(ctx, first)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(filepath.Join(v.dir, "delta.vmdk"))
	if g.refusals != 0 {
		t.Fatalf("cookie not sent: %d refusals", g.refusals)
	}
	g.expire()
	if got := readAll(t, s); !bytes.Equal(got, want) {
		t.Fatal("bytes differ after re-login")
	}
	if g.refusals == 0 || o.Stats().Reconnects != 1 {
		t.Fatalf("no re-login happened: refusals %d stats %+v", g.refusals, o.Stats())
	}
	t.Logf("refusals %d, stats %+v", g.refusals, o.Stats())
}

func TestKeepAliveRenewsLostSession(t *testing.T) {
	v := startVCSim(t)
	ctx := context.Background()
	opts := v.opts()
	opts.KeepAlive = 50 * time.Millisecond
	o, err := NewOpener(ctx, v.url(v.server.URL.Host, "delta.vmdk"), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	c, gen := o.Session().Client(), o.Session().Gen()
	if err := session.NewManager(c).Logout(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if o.Session().Gen() > gen {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("keep-alive did not log in again after the session ended")
}

// TestGivenSession reads with a session the caller logged in: no login of the opener's own,
// and Close leaves the session to its owner.
func TestGivenSession(t *testing.T) {
	v := startVCSim(t)
	g := newSessionGate(t, v) // refuses /folder requests without the session's cookie
	ctx := context.Background()
	host := g.Listener.Addr().String()
	sess, err := vsession.Login(ctx, vsession.Config{Host: host, User: testUser, Password: testPass,
		TLS: httpsrc.TLSOptions{Thumbprints: []string{httpsrc.ThumbprintSHA256(g.Certificate().Raw)}}})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Logout(ctx)
	first := v.url(host, "delta.vmdk")
	// No password and no TLS pin: both come with the session.
	o, err := NewOpener(ctx, first, Options{Session: sess, HTTP: httpsrc.Options{Retry: fastRetry}})
	if err != nil {
		t.Fatal(err)
	}
	if o.Session() != sess {
		t.Fatal("the opener does not read with the session given")
	}
	s, err := o.Open(ctx, first)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(filepath.Join(v.dir, "delta.vmdk"))
	if got := readAll(t, s); !bytes.Equal(got, want) {
		t.Fatal("bytes read with the given session differ from the local file")
	}
	if g.refusals != 0 || sess.Gen() != 1 {
		t.Fatalf("the given session's cookie was refused %d times (generation %d)", g.refusals, sess.Gen())
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if us, err := session.NewManager(sess.Client()).UserSession(ctx); err != nil || us == nil || sess.Gen() != 1 {
		t.Fatalf("the given session after Close: %+v, gen %d, %v", us, sess.Gen(), err)
	}
	if _, err := NewOpener(ctx, v.url("other.example:443", "delta.vmdk"), Options{Session: sess}); err == nil || !strings.Contains(err.Error(), "not of this host") {
		t.Fatalf("a session of another host: %v", err)
	}
}
