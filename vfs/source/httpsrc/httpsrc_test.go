package httpsrc

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/h2kvm/h2kvm/vfs"
	"github.com/h2kvm/h2kvm/vfs/source/httpsrc/httpsrctest"
	"github.com/h2kvm/h2kvm/vfs/source/retry"
)

var fastRetry = retry.Policy{Attempts: 5, BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond, MaxElapsed: 10 * time.Second}

func testData(n int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func newServer(t *testing.T, data []byte) *httpsrctest.Server {
	t.Helper()
	s := httpsrctest.New(map[string][]byte{"dir/disk.bin": data, "dir/empty": {}})
	t.Cleanup(s.Close)
	return s
}

func open(t *testing.T, url string, o Options) *Source {
	t.Helper()
	if o.Retry == (retry.Policy{}) {
		o.Retry = fastRetry
	}
	s, err := Open(context.Background(), url, o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestReadMatchesServedBytes(t *testing.T) {
	data := testData(1<<20 + 123)
	srv := newServer(t, data)
	s := open(t, srv.FileURL("dir/disk.bin"), Options{})
	if s.Size() != int64(len(data)) {
		t.Fatalf("size %d, want %d", s.Size(), len(data))
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 9))
			for range 20 {
				off := r.Int64N(int64(len(data)))
				n := r.IntN(200000) + 1
				p := make([]byte, n)
				got, err := s.ReadAt(context.Background(), p, off)
				end := min(off+int64(n), int64(len(data)))
				if int64(got) != end-off {
					t.Errorf("read %d at %d: got %d bytes, err %v", n, off, got, err)
					return
				}
				if end-off < int64(n) && err != io.EOF || end-off == int64(n) && err != nil {
					t.Errorf("read %d at %d: err %v", n, off, err)
				}
				if !bytes.Equal(p[:got], data[off:end]) {
					t.Errorf("read %d at %d: wrong bytes", n, off)
				}
			}
		}()
	}
	wg.Wait()
	st := s.Stats()
	if st.BytesFetched == 0 || st.Requests < 161 || st.Retries != 0 {
		t.Fatalf("stats %+v", st)
	}
	if p := make([]byte, 10); true {
		if n, err := s.ReadAt(context.Background(), p, int64(len(data))); n != 0 || err != io.EOF {
			t.Fatalf("read at end: %d %v", n, err)
		}
	}
}

func TestEmptyFile(t *testing.T) {
	srv := newServer(t, testData(10))
	s := open(t, srv.FileURL("dir/empty"), Options{})
	if s.Size() != 0 {
		t.Fatalf("size %d", s.Size())
	}
}

func TestNotFound(t *testing.T) {
	srv := newServer(t, testData(10))
	_, err := Open(context.Background(), srv.FileURL("dir/nope"), Options{Retry: fastRetry})
	if !errors.Is(err, vfs.ErrNotFound) || !strings.Contains(err.Error(), "/dir/nope") {
		t.Fatalf("want ErrNotFound naming the file, got %v", err)
	}
}

func TestRefusesServerWithoutRanges(t *testing.T) {
	srv := newServer(t, testData(1000))
	srv.SetPersistent(httpsrctest.IgnoreRange)
	_, err := Open(context.Background(), srv.FileURL("dir/disk.bin"), Options{Retry: fastRetry})
	if !errors.Is(err, vfs.ErrUnsupported) || !strings.Contains(err.Error(), "Range") {
		t.Fatalf("want a clear refusal, got %v", err)
	}
}

func TestPasswordInURLRefused(t *testing.T) {
	_, err := Open(context.Background(), "http://u:secret@127.0.0.1:1/x", Options{})
	if err == nil || strings.Contains(err.Error(), "secret") {
		t.Fatalf("want refusal without the password, got %v", err)
	}
}

// Every fault is injected once before a read; the read must still return exactly the file's
// bytes. Persistent faults must end in a clear error, never wrong bytes.
func TestFaultsRecovered(t *testing.T) {
	data := testData(300000)
	for _, f := range []httpsrctest.Fault{httpsrctest.Drop, httpsrctest.Status500, httpsrctest.Status503,
		httpsrctest.Status429, httpsrctest.Stall, httpsrctest.ShortBody, httpsrctest.WrongContentRange} {
		t.Run(f.String(), func(t *testing.T) {
			srv := newServer(t, data)
			s := open(t, srv.FileURL("dir/disk.bin"), Options{StallTimeout: 200 * time.Millisecond,
				Retry: retry.Policy{Attempts: 5, BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond, MaxElapsed: 10 * time.Second}})
			srv.Inject(f, f)
			p := make([]byte, 100000)
			n, err := s.ReadAt(context.Background(), p, 1234)
			if err != nil || n != len(p) || !bytes.Equal(p, data[1234:1234+len(p)]) {
				t.Fatalf("n=%d err=%v equal=%v", n, err, bytes.Equal(p, data[1234:1234+len(p)]))
			}
			if s.Stats().Retries < 2 || srv.Faulted() != 2 {
				t.Fatalf("stats %+v faulted %d", s.Stats(), srv.Faulted())
			}
		})
	}
}

func TestPersistentFaultsFailClearly(t *testing.T) {
	data := testData(300000)
	for _, f := range []httpsrctest.Fault{httpsrctest.Drop, httpsrctest.Status500, httpsrctest.Stall,
		httpsrctest.ShortBody, httpsrctest.WrongContentRange, httpsrctest.IgnoreRange, httpsrctest.Unauthorized} {
		t.Run(f.String(), func(t *testing.T) {
			srv := newServer(t, data)
			s := open(t, srv.FileURL("dir/disk.bin"), Options{StallTimeout: 100 * time.Millisecond})
			srv.SetPersistent(f)
			p := make([]byte, 100000)
			for i := range p {
				p[i] = 0xEE
			}
			n, err := s.ReadAt(context.Background(), p, 1234)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), srv.FileURL("dir/disk.bin")) || !strings.Contains(err.Error(), "1234") {
				t.Fatalf("error does not name file and offset: %v", err)
			}
			if !bytes.Equal(p[:n], data[1234:1234+n]) {
				t.Fatal("wrong bytes returned")
			}
			for _, b := range p[n:] {
				if b != 0xEE {
					// bytes beyond n may have been written by a failed attempt only if correct.
					break
				}
			}
			t.Logf("%s: n=%d: %v", f, n, err)
		})
	}
}

func TestContextCancelled(t *testing.T) {
	srv := newServer(t, testData(1000))
	s := open(t, srv.FileURL("dir/disk.bin"), Options{})
	srv.SetPersistent(httpsrctest.Stall)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := s.ReadAt(ctx, make([]byte, 10), 0)
	if err != context.DeadlineExceeded {
		t.Fatalf("want context.DeadlineExceeded unwrapped, got %v", err)
	}
}

func TestUnreachableHostRetriesThenFails(t *testing.T) {
	srv := newServer(t, nil)
	url := srv.FileURL("dir/disk.bin")
	srv.Close()
	_, err := Open(context.Background(), url, Options{Retry: retry.Policy{Attempts: 3, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}})
	if !errors.Is(err, vfs.ErrTransient) || !strings.Contains(err.Error(), "gave up after 3 attempts") {
		t.Fatalf("got %v", err)
	}
}

func TestTLS(t *testing.T) {
	data := testData(5000)
	srv := httpsrctest.NewTLS(map[string][]byte{"d/f": data})
	defer srv.Close()
	der := srv.Certificate().Raw
	url := srv.FileURL("d/f")
	ctx := context.Background()

	_, err := Open(ctx, url, Options{Retry: fastRetry})
	var ce *CertError
	if !errors.As(err, &ce) || ce.SHA256 != ThumbprintSHA256(der) || errors.Is(err, vfs.ErrTransient) {
		t.Fatalf("want a permanent CertError with the thumbprint, got %v", err)
	}
	t.Log(err)
	if _, err := Open(ctx, url, Options{Retry: fastRetry, TLS: TLSOptions{Thumbprints: []string{strings.Repeat("AB:", 31) + "AB"}}}); !errors.As(err, &ce) {
		t.Fatalf("wrong pin accepted: %v", err)
	}
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	for name, o := range map[string]TLSOptions{
		"sha256":   {Thumbprints: []string{ThumbprintSHA256(der)}},
		"sha1":     {Thumbprints: []string{strings.ToLower(strings.ReplaceAll(ThumbprintSHA1(der), ":", ""))}},
		"ca":       {CAFile: ca},
		"insecure": {Insecure: true},
	} {
		s, err := Open(ctx, url, Options{Retry: fastRetry, TLS: o})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		p := make([]byte, 5000)
		if err := vfs.ReadFull(ctx, s, p, 0); err != nil || !bytes.Equal(p, data) {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if _, err := TLSConfig(TLSOptions{Thumbprints: []string{"xyz"}}, "h"); err == nil {
		t.Fatal("bad pin accepted")
	}
	// The httptest certificate is for 127.0.0.1 / example.com: a CA file does not make
	// "localhost" valid, so the name check is really done.
	if _, err := x509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, strings.Replace(url, "127.0.0.1", "localhost", 1), Options{Retry: fastRetry, TLS: TLSOptions{CAFile: ca}}); !errors.As(err, &ce) {
		t.Fatalf("host name not checked: %v", err)
	}
}

func TestOpenerResolve(t *testing.T) {
	o, err := NewOpener("https://h/folder/vm/a.vmdk?dcPath=DC&dsName=ds1", Options{Root: "/folder/"})
	if err != nil {
		t.Fatal(err)
	}
	base := "https://h/folder/vm/a.vmdk?dcPath=DC&dsName=ds1"
	for _, c := range []struct{ rel, want string }{
		{"a-flat.vmdk", "https://h/folder/vm/a-flat.vmdk?dcPath=DC&dsName=ds1"},
		{"../other/b.vmdk", "https://h/folder/other/b.vmdk?dcPath=DC&dsName=ds1"},
		{"sub dir/c#1.vmdk", "https://h/folder/vm/sub%20dir/c%231.vmdk?dcPath=DC&dsName=ds1"},
		{"../../etc/passwd", ""},
		{"/etc/passwd", ""},
		{"https://evil/folder/x", ""},
		{"", ""},
	} {
		got, err := o.Resolve(base, c.rel)
		if c.want == "" {
			if !errors.Is(err, vfs.ErrChain) && err == nil {
				t.Errorf("%q: want refusal, got %q", c.rel, got)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%q: got %q %v, want %q", c.rel, got, err, c.want)
		}
	}
	o2, _ := NewOpener("http://h/a/b/disk.vmdk", Options{})
	if _, err := o2.Resolve("http://h/a/b/disk.vmdk", "../x.vmdk"); !errors.Is(err, vfs.ErrChain) {
		t.Errorf("escape above the first file's folder allowed: %v", err)
	}
}

func TestOpenerOpensResolvedAndCounts(t *testing.T) {
	data := testData(4096)
	srv := httpsrctest.New(map[string][]byte{"vm/a.vmdk": data[:100], "vm/a-flat.vmdk": data})
	defer srv.Close()
	o, err := NewOpener(srv.FileURL("vm/a.vmdk"), Options{Retry: fastRetry})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	name, err := o.Resolve(srv.FileURL("vm/a.vmdk"), "a-flat.vmdk")
	if err != nil {
		t.Fatal(err)
	}
	s, err := o.Open(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	srv.ResetCounts()
	p := make([]byte, 4096)
	if err := vfs.ReadFull(ctx, s, p, 0); err != nil || !bytes.Equal(p, data) {
		t.Fatal(err)
	}
	if srv.Requests() != 1 || srv.BytesServed() != 4096 {
		t.Fatalf("server saw %d requests, %d bytes", srv.Requests(), srv.BytesServed())
	}
	if _, err := o.Open(ctx, "http://other.invalid/vm/x"); !errors.Is(err, vfs.ErrChain) {
		t.Fatalf("foreign host opened: %v", err)
	}
	_ = http.StatusOK
}
