// Package httpsrctest is an HTTP file server for tests that injects faults (dropped
// connections, 5xx, stalls, short bodies, ignored or wrong ranges) and counts the requests and
// bytes it served, so that tests of anything above a remote source can assert what was fetched.
//
// Normal requests are answered by net/http's own ServeContent (real Range semantics).
package httpsrctest

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Fault is one misbehaviour applied to one request.
type Fault int

const (
	None              Fault = iota
	Drop                    // close the connection without answering
	Status500               // 500 Internal Server Error
	Status503               // 503 with Retry-After: 1
	Status429               // 429 Too Many Requests
	Stall                   // send nothing until the client gives up (or StallFor passes)
	ShortBody               // promise the range, send half of it, close
	IgnoreRange             // 200 with the whole file
	WrongContentRange       // 206 whose Content-Range and bytes start one byte later
	Unauthorized            // 401
)

func (f Fault) String() string {
	return [...]string{"none", "drop", "500", "503", "429", "stall", "short-body", "ignore-range",
		"wrong-content-range", "401"}[f]
}

// Server serves in-memory files at /NAME.
type Server struct {
	*httptest.Server
	// StallFor bounds a Stall (default 30 s); the handler also returns when the client leaves.
	StallFor time.Duration

	mu         sync.Mutex
	files      map[string][]byte
	queue      []Fault
	persistent Fault
	// Check, when set, may refuse a request (return false) after writing its own answer.
	check func(w http.ResponseWriter, r *http.Request) bool

	requests, bytesServed, faulted atomic.Int64
}

// New starts a plain HTTP server for files (name → content, names without a leading slash).
func New(files map[string][]byte) *Server {
	s := &Server{files: files, StallFor: 30 * time.Second}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// NewTLS starts an HTTPS server with httptest's self-signed certificate.
func NewTLS(files map[string][]byte) *Server {
	s := &Server{files: files, StallFor: 30 * time.Second}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(s.serve))
	return s
}

// FileURL returns the URL of a file.
func (s *Server) FileURL(name string) string { return s.URL + "/" + name }

// Inject queues faults: the next requests get them, one each, in order.
func (s *Server) Inject(f ...Fault) {
	s.mu.Lock()
	s.queue = append(s.queue, f...)
	s.mu.Unlock()
}

// SetPersistent applies f to every request not served from the queue (None to stop).
func (s *Server) SetPersistent(f Fault) {
	s.mu.Lock()
	s.persistent = f
	s.mu.Unlock()
}

// SetCheck installs a gate run before every request (nil removes it).
func (s *Server) SetCheck(check func(w http.ResponseWriter, r *http.Request) bool) {
	s.mu.Lock()
	s.check = check
	s.mu.Unlock()
}

// Requests returns the number of requests received.
func (s *Server) Requests() int64 { return s.requests.Load() }

// BytesServed returns the number of body bytes written.
func (s *Server) BytesServed() int64 { return s.bytesServed.Load() }

// Faulted returns the number of requests that got a fault.
func (s *Server) Faulted() int64 { return s.faulted.Load() }

// ResetCounts zeroes the counters.
func (s *Server) ResetCounts() {
	s.requests.Store(0)
	s.bytesServed.Store(0)
	s.faulted.Store(0)
}

type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (c countingWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n.Add(int64(n))
	return n, err
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	s.mu.Lock()
	data, ok := s.files[strings.TrimPrefix(r.URL.Path, "/")]
	f := s.persistent
	if len(s.queue) > 0 {
		f, s.queue = s.queue[0], s.queue[1:]
	}
	check := s.check
	s.mu.Unlock()
	if check != nil && !check(w, r) {
		return
	}
	if !ok {
		http.NotFound(w, r)
		return
	}
	if f != None {
		s.faulted.Add(1)
	}
	cw := countingWriter{w, &s.bytesServed}
	first, last, hasRange := parseRange(r.Header.Get("Range"), int64(len(data)))
	switch f {
	case None:
		http.ServeContent(cw, r, "", time.Time{}, bytes.NewReader(data))
	case Drop:
		hijackClose(w)
	case Status500:
		http.Error(w, "injected failure", http.StatusInternalServerError)
	case Status503:
		w.Header().Set("Retry-After", "1")
		http.Error(w, "injected unavailability", http.StatusServiceUnavailable)
	case Status429:
		http.Error(w, "injected rate limit", http.StatusTooManyRequests)
	case Unauthorized:
		http.Error(w, "injected 401", http.StatusUnauthorized)
	case Stall:
		select {
		case <-r.Context().Done():
		case <-time.After(s.StallFor):
		}
	case IgnoreRange:
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		w.WriteHeader(http.StatusOK)
		cw.Write(data)
	case ShortBody, WrongContentRange:
		if !hasRange {
			first, last = 0, int64(len(data))-1
		}
		if f == WrongContentRange && last+1 < int64(len(data)) {
			first, last = first+1, last+1
		}
		body := data[first : last+1]
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", first, last, len(data)))
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		w.WriteHeader(http.StatusPartialContent)
		if f == ShortBody {
			cw.Write(body[:len(body)/2])
			w.(http.Flusher).Flush()
			hijackClose(w)
			return
		}
		cw.Write(body)
	}
}

func hijackClose(w http.ResponseWriter) {
	if c, _, err := http.NewResponseController(w).Hijack(); err == nil {
		c.Close()
	}
}

// parseRange parses a single "bytes=a-b" range within size.
func parseRange(h string, size int64) (first, last int64, ok bool) {
	var a, b int64
	if n, _ := fmt.Sscanf(h, "bytes=%d-%d", &a, &b); n != 2 || a < 0 || b < a || a >= size {
		return 0, 0, false
	}
	return a, min(b, size-1), true
}
