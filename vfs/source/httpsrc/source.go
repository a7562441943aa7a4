package httpsrc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/h2kvm/h2kvm/vfs"
	"github.com/h2kvm/h2kvm/vfs/source/fetch"
	"github.com/h2kvm/h2kvm/vfs/source/retry"
	"github.com/h2kvm/h2kvm/vfs/source/stats"
)

// DefaultStallTimeout is how long one request may go without receiving a byte.
const DefaultStallTimeout = fetch.DefaultStallTimeout

// Authorizer adds credentials to requests (a vSphere session cookie) and renews them when the
// server refuses them. Implementations MUST be safe for concurrent use.
type Authorizer interface {
	// Authorize adds credentials to req and returns the generation of the credentials used.
	Authorize(ctx context.Context, req *http.Request) (gen uint64, err error)
	// Renew is called when a request authorized with generation gen was refused (401/403). It
	// renews the credentials unless a newer generation exists already.
	Renew(ctx context.Context, gen uint64) error
}

// Options configure sources and openers. The zero value is usable: verified TLS, default
// retry budget, a fresh transport.
type Options struct {
	TLS   TLSOptions
	Retry retry.Policy
	// StallTimeout bounds the wait for each response header and for each piece of its body;
	// a request that makes no progress for this long is abandoned and retried.
	StallTimeout time.Duration
	// Transport, when set, is used instead of NewTransport(TLS) (share one across openers).
	Transport http.RoundTripper
	// Auth, when set, authorizes every request.
	Auth Authorizer
	// Stats, when set, counts what is fetched (share one per export).
	Stats *stats.Counter
	// Root is the URL path prefix no resolved name may leave ("/folder/" on a datastore).
	// Empty means the folder of the first file.
	Root string
	// MapAbsolute, when set, maps an absolute file path found in a descriptor (a VMware parent
	// hint like /vmfs/volumes/ds/vm/a.vmdk) to a URL path on the server, or reports false.
	MapAbsolute func(base *url.URL, p string) (string, bool)
}

// client is what sources opened through one opener share.
type client struct {
	hc    *http.Client
	opts  Options
	stats *stats.Counter
}

func newClient(opts Options) (*client, error) {
	fetch.Defaults(nil, &opts.StallTimeout, &opts.Stats)
	rt := opts.Transport
	if rt == nil {
		t, err := NewTransport(opts.TLS)
		if err != nil {
			return nil, fmt.Errorf("http: %w", err)
		}
		rt = t
	}
	hc := &http.Client{
		Transport: rt,
		// A redirect could silently move us to another file or host; refuse it.
		CheckRedirect: func(req *http.Request, via []*http.Request) error { return http.ErrUseLastResponse },
	}
	return &client{hc: hc, opts: opts, stats: opts.Stats}, nil
}

// Source is one remote file read with HTTP Range requests. It is safe for concurrent use:
// parallel ReadAt calls send parallel requests over kept-alive connections.
type Source struct {
	// set once
	c    *client
	u    *url.URL // without user info
	name string
	size int64
	etag string // the ETag of the probe's answer, "" if none
	// lastMod is the Last-Modified of the probe's answer, "" if none: the version when the
	// server sends no ETag.
	lastMod string
	r       fetch.Reader
}

var (
	_ vfs.Source     = (*Source)(nil)
	_ stats.Reporter = (*Source)(nil)
)

// Open checks that the server answers range requests for rawURL and learns the file's size.
func Open(ctx context.Context, rawURL string, opts Options) (*Source, error) {
	c, err := newClient(opts)
	if err != nil {
		return nil, err
	}
	u, err := parseURL(rawURL)
	if err != nil {
		return nil, err
	}
	return c.open(ctx, u)
}

// parseURL parses an http(s) URL and refuses one carrying a password.
func parseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("http: bad URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("http: %s: not an http or https URL", Redact(u))
	}
	if u.Host == "" {
		return nil, fmt.Errorf("http: %s: no host", Redact(u))
	}
	if _, set := u.User.Password(); set {
		return nil, fmt.Errorf("http: %s: a password in the URL is not allowed; pass it through the environment or a file", Redact(u))
	}
	u.Fragment = ""
	return u, nil
}

// Redact returns the URL as a string without user information.
func Redact(u *url.URL) string {
	c := *u
	c.User = nil
	return c.String()
}

func (c *client) open(ctx context.Context, u *url.URL) (*Source, error) {
	ru := *u
	ru.User = nil
	s := &Source{c: c, u: &ru, name: ru.String()}
	var size int64 = -1
	err := fetch.Open(ctx, "http", s.name, c.opts.Retry, c.stats, func(ctx context.Context) error {
		var err error
		size, s.etag, s.lastMod, err = s.probe(ctx)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.size = size
	s.r = fetch.Reader{Subsystem: "http", Name: s.name, Size: size, Retry: c.opts.Retry, Stats: c.stats, Fetch: s.fetch}
	return s, nil
}

// probe sends "Range: bytes=0-0" and learns the size from Content-Range.
// It also learns the file's version: its ETag and Last-Modified headers.
func (s *Source) probe(ctx context.Context) (size int64, etag, lastMod string, err error) {
	resp, cancel, err := s.do(ctx, 0, 0, true)
	if err != nil {
		return 0, "", "", err
	}
	defer cancel()
	defer resp.Body.Close()
	etag, lastMod = resp.Header.Get("ETag"), resp.Header.Get("Last-Modified")
	switch resp.StatusCode {
	case http.StatusPartialContent:
		first, last, total, err := parseContentRange(resp.Header.Get("Content-Range"))
		if err != nil || first != 0 || last != 0 || total < 1 {
			return 0, "", "", retry.Transient(fmt.Errorf("answered Content-Range %q to a request for bytes=0-0", resp.Header.Get("Content-Range")))
		}
		return total, etag, lastMod, nil
	case http.StatusRequestedRangeNotSatisfiable:
		if resp.Header.Get("Content-Range") == "bytes */0" {
			return 0, etag, lastMod, nil
		}
		return 0, "", "", fmt.Errorf("answered 416 with Content-Range %q to a request for bytes=0-0", resp.Header.Get("Content-Range"))
	case http.StatusOK:
		// A file of 0 or 1 bytes is whole in its answer to bytes=0-0.
		if resp.ContentLength == 0 || resp.ContentLength == 1 {
			return resp.ContentLength, etag, lastMod, nil
		}
		return 0, "", "", fmt.Errorf("server does not support HTTP Range requests (it answered 200 with the whole file to a range request): %w", vfs.ErrUnsupported)
	}
	return 0, "", "", statusError(resp)
}

// do sends one GET for bytes [first, last] with authorization (renewed once on 401/403) and a
// stall timer; the caller closes the body and then calls cancel.
func (s *Source) do(ctx context.Context, first, last int64, renewOK bool) (*http.Response, func(), error) {
	actx, cancel := context.WithCancelCause(ctx)
	req, err := http.NewRequestWithContext(actx, http.MethodGet, s.u.String(), nil)
	if err != nil {
		cancel(nil)
		return nil, nil, err
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", first, last))
	req.Header.Set("Accept-Encoding", "identity")
	var gen uint64
	if a := s.c.opts.Auth; a != nil {
		if gen, err = a.Authorize(ctx, req); err != nil {
			cancel(nil)
			return nil, nil, err
		}
	}
	st := &stallTimer{cancel: cancel, d: s.c.opts.StallTimeout}
	st.t = time.AfterFunc(st.d, st.fire)
	stop := func() { st.t.Stop(); cancel(nil) }
	s.c.stats.AddRequest()
	resp, err := s.c.hc.Do(req)
	if err != nil {
		stop()
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		if errors.Is(context.Cause(actx), errStalled) {
			return nil, nil, retry.Transient(fmt.Errorf("no response within %s", st.d))
		}
		return nil, nil, Classify(err)
	}
	if (resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden) && s.c.opts.Auth != nil && renewOK {
		resp.Body.Close()
		stop()
		if err := s.c.opts.Auth.Renew(ctx, gen); err != nil {
			return nil, nil, fmt.Errorf("server refused the session (HTTP %d) and renewing it failed: %w", resp.StatusCode, err)
		}
		return s.do(ctx, first, last, false)
	}
	resp.Body = &progressBody{ReadCloser: resp.Body, st: st}
	return resp, stop, nil
}

var errStalled = errors.New("stalled")

// stallTimer cancels a request that makes no progress for d.
type stallTimer struct {
	t      *time.Timer
	d      time.Duration
	cancel context.CancelCauseFunc
}

func (s *stallTimer) fire() { s.cancel(errStalled) }

type progressBody struct {
	io.ReadCloser
	st *stallTimer
}

func (b *progressBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.st.t.Reset(b.st.d)
	}
	return n, err
}

// ReadAt reads len(p) bytes at off (fewer, with io.EOF, at the end of the file). Transient
// failures are retried within the budget; received bytes are kept, so a retry asks only for
// what is missing. Bytes are accepted only under a Content-Range naming exactly where they go.
func (s *Source) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	return s.r.ReadAt(ctx, p, off)
}

// fetch makes one attempt at p, returning how many leading bytes of p it filled.
func (s *Source) fetch(ctx context.Context, p []byte, off int64) (int, error) {
	last := off + int64(len(p)) - 1
	resp, cancel, err := s.do(ctx, off, last, true)
	if err != nil {
		return 0, err
	}
	defer cancel()
	defer resp.Body.Close()
	if et := resp.Header.Get("ETag"); s.etag != "" && et != "" && et != s.etag {
		return 0, fmt.Errorf("file changed on the server (ETag %s, was %s)", et, s.etag)
	}
	var n int64
	switch resp.StatusCode {
	case http.StatusPartialContent:
		cr := resp.Header.Get("Content-Range")
		first, l, total, err := parseContentRange(cr)
		if err != nil || first != off || l < first || l > last {
			return 0, retry.Transient(fmt.Errorf("server answered Content-Range %q to a request for bytes=%d-%d", cr, off, last))
		}
		if total >= 0 && total != s.size {
			return 0, fmt.Errorf("file size changed on the server from %d to %d", s.size, total)
		}
		n = l - first + 1
	case http.StatusOK:
		// Only acceptable when the whole file was asked for.
		if off != 0 || int64(len(p)) != s.size {
			return 0, fmt.Errorf("server ignored the Range header (200 with the whole file): %w", vfs.ErrUnsupported)
		}
		n = s.size
	case http.StatusRequestedRangeNotSatisfiable:
		return 0, fmt.Errorf("server says bytes=%d-%d lie outside the file (size changed?): %w", off, last, vfs.ErrTruncated)
	default:
		return 0, statusError(resp)
	}
	if resp.ContentLength >= 0 && resp.ContentLength != n {
		return 0, retry.Transient(fmt.Errorf("Content-Length %d does not match the %d bytes of the range", resp.ContentLength, n))
	}
	got, err := io.ReadFull(resp.Body, p[:n])
	if err != nil {
		if ctx.Err() != nil {
			return got, ctx.Err()
		}
		return got, retry.Transient(fmt.Errorf("body ended after %d of %d bytes: %v", got, n, err))
	}
	// Reading to EOF lets the connection be reused; extra bytes mean the server lied.
	var one [1]byte
	if k, _ := resp.Body.Read(one[:]); k > 0 {
		return 0, retry.Transient(fmt.Errorf("body is longer than its Content-Range %q", resp.Header.Get("Content-Range")))
	}
	if int(n) < len(p) {
		return int(n), retry.Transient(fmt.Errorf("server sent %d of %d bytes", n, len(p)))
	}
	return int(n), nil
}

// parseContentRange parses "bytes FIRST-LAST/TOTAL"; total is -1 for "*".
func parseContentRange(s string) (first, last, total int64, err error) {
	bad := fmt.Errorf("bad Content-Range %q", s)
	rest, ok := strings.CutPrefix(s, "bytes ")
	if !ok {
		return 0, 0, 0, bad
	}
	rng, tot, ok := strings.Cut(rest, "/")
	if !ok {
		return 0, 0, 0, bad
	}
	a, b, ok := strings.Cut(rng, "-")
	if !ok {
		return 0, 0, 0, bad
	}
	if first, err = strconv.ParseInt(a, 10, 64); err != nil || first < 0 {
		return 0, 0, 0, bad
	}
	if last, err = strconv.ParseInt(b, 10, 64); err != nil || last < first {
		return 0, 0, 0, bad
	}
	if tot == "*" {
		return first, last, -1, nil
	}
	if total, err = strconv.ParseInt(tot, 10, 64); err != nil || total <= last {
		return 0, 0, 0, bad
	}
	return first, last, total, nil
}

// Size returns the file size learned when the source was opened.
func (s *Source) Size() int64 { return s.size }

// Name returns the URL without user information.
func (s *Source) Name() string { return s.name }

// Version identifies the version of the file the source reads, as the server named it when
// the source was opened: `etag=<ETag>` when the server sent an ETag, otherwise
// `last-modified=<Last-Modified>`, otherwise "" (the server gives no version; only the size
// tells versions apart). A file that changes on the server under an open source fails its
// reads once the ETag differs.
func (s *Source) Version() string {
	switch {
	case s.etag != "":
		return "etag=" + s.etag
	case s.lastMod != "":
		return "last-modified=" + s.lastMod
	}
	return ""
}

// Stats returns the counter shared by the sources of this source's opener.
func (s *Source) Stats() stats.Snapshot { return s.c.stats.Snapshot() }

// Close releases nothing: connections belong to the shared transport.
func (s *Source) Close() error { return nil }
