package fetch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/h2kvm/h2kvm/vfs"
	"github.com/h2kvm/h2kvm/vfs/source/retry"
	"github.com/h2kvm/h2kvm/vfs/source/stats"
)

var fast = retry.Policy{Attempts: 4, BaseDelay: time.Microsecond, MaxDelay: time.Microsecond, MaxElapsed: 10 * time.Second}

// call is one Fetch the reader made.
type call struct {
	off int64
	n   int
}

// remote is a file served by a Fetch that records its calls and can fail on demand.
type remote struct {
	data []byte
	mu   sync.Mutex
	log  []call
	// fault, when set, decides the answer of call number i (from 0): how many bytes to fill
	// and the error to return.
	fault func(i int, p []byte) (int, error)
}

func (r *remote) fetch(ctx context.Context, p []byte, off int64) (int, error) {
	r.mu.Lock()
	i := len(r.log)
	r.log = append(r.log, call{off, len(p)})
	f := r.fault
	r.mu.Unlock()
	if off < 0 || off+int64(len(p)) > int64(len(r.data)) || len(p) == 0 {
		return 0, fmt.Errorf("fetch out of bounds: %d bytes at %d", len(p), off)
	}
	if f != nil {
		n, err := f(i, p)
		copy(p[:n], r.data[off:])
		return n, err
	}
	return copy(p, r.data[off:]), nil
}

func (r *remote) calls() []call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]call(nil), r.log...)
}

func newReader(data []byte, chunk int) (*Reader, *remote, *stats.Counter) {
	rm := &remote{data: data}
	st := new(stats.Counter)
	return &Reader{Subsystem: "test", Name: "mem://file", Size: int64(len(data)), Chunk: chunk, Retry: fast, Stats: st, Fetch: rm.fetch}, rm, st
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*31 + i>>8)
	}
	return b
}

func TestReadAtClipsAtEOF(t *testing.T) {
	data := pattern(10000)
	for _, c := range []struct {
		off     int64
		len     int
		n       int
		wantEOF bool
	}{
		{0, 10000, 10000, false},
		{0, 10001, 10000, true},
		{9999, 1, 1, false},
		{9999, 2, 1, true},
		{5000, 100000, 5000, true},
		{10000, 1, 0, true},
		{10000, 0, 0, false},
		{20000, 10, 0, true},
		{123, 0, 0, false},
	} {
		r, rm, st := newReader(data, 0)
		p := make([]byte, c.len)
		n, err := r.ReadAt(context.Background(), p, c.off)
		if n != c.n || (err == io.EOF) != c.wantEOF || err != nil && err != io.EOF {
			t.Errorf("%d bytes at %d: n=%d err=%v, want n=%d EOF=%v", c.len, c.off, n, err, c.n, c.wantEOF)
			continue
		}
		if n > 0 && !bytes.Equal(p[:n], data[c.off:c.off+int64(n)]) {
			t.Errorf("%d bytes at %d: wrong bytes", c.len, c.off)
		}
		if c.n == 0 && len(rm.calls()) != 0 {
			t.Errorf("%d bytes at %d: fetched %v for nothing", c.len, c.off, rm.calls())
		}
		if st.Snapshot().BytesFetched != int64(c.n) {
			t.Errorf("%d bytes at %d: counted %d bytes", c.len, c.off, st.Snapshot().BytesFetched)
		}
	}
}

func TestReadAtNegativeOffset(t *testing.T) {
	r, rm, _ := newReader(pattern(100), 0)
	n, err := r.ReadAt(context.Background(), make([]byte, 10), -1)
	if n != 0 || !errors.Is(err, vfs.ErrOutOfRange) || !strings.Contains(err.Error(), "test: mem://file") || len(rm.calls()) != 0 {
		t.Fatalf("n=%d err=%v calls %v", n, err, rm.calls())
	}
}

func TestReadAtChunks(t *testing.T) {
	data := pattern(10000)
	r, rm, _ := newReader(data, 1000)
	p := make([]byte, 3500)
	if n, err := r.ReadAt(context.Background(), p, 6600); n != 3400 || err != io.EOF || !bytes.Equal(p[:n], data[6600:]) {
		t.Fatalf("n=%d err=%v", n, err)
	}
	want := []call{{6600, 1000}, {7600, 1000}, {8600, 1000}, {9600, 400}}
	if got := rm.calls(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("fetches %v, want %v", got, want)
	}
}

func TestReadAtRetriesTransient(t *testing.T) {
	data := pattern(5000)
	for fails := range fast.Attempts + 1 {
		t.Run(fmt.Sprint(fails), func(t *testing.T) {
			r, rm, st := newReader(data, 2000)
			rm.fault = func(i int, p []byte) (int, error) {
				// The second chunk fails its first attempts.
				if i >= 1 && i <= fails {
					return 0, retry.Transient(errors.New("injected"))
				}
				return len(p), nil
			}
			p := make([]byte, 5000)
			n, err := r.ReadAt(context.Background(), p, 0)
			if fails < fast.Attempts {
				if err != nil || n != 5000 || !bytes.Equal(p, data) || st.Snapshot().Retries != int64(fails) {
					t.Fatalf("n=%d err=%v retries %d", n, err, st.Snapshot().Retries)
				}
				return
			}
			// Budget spent: the error says so, names the file and the chunk, and the bytes of
			// the first chunk are reported.
			if n != 2000 || !errors.Is(err, vfs.ErrTransient) || !strings.Contains(err.Error(), "gave up after 4 attempts") ||
				!strings.Contains(err.Error(), "test: mem://file: read 2000 bytes at offset 2000") {
				t.Fatalf("n=%d err=%v", n, err)
			}
			if len(rm.calls()) != 1+fast.Attempts {
				t.Fatalf("%d fetches, want %d", len(rm.calls()), 1+fast.Attempts)
			}
		})
	}
}

func TestReadAtPermanentNotRetried(t *testing.T) {
	r, rm, st := newReader(pattern(100), 0)
	rm.fault = func(i int, p []byte) (int, error) { return 0, fmt.Errorf("gone: %w", vfs.ErrNotFound) }
	_, err := r.ReadAt(context.Background(), make([]byte, 10), 5)
	if !errors.Is(err, vfs.ErrNotFound) || errors.Is(err, vfs.ErrTransient) || len(rm.calls()) != 1 || st.Snapshot().Retries != 0 {
		t.Fatalf("err=%v calls %v", err, rm.calls())
	}
}

// A failed attempt's bytes are kept: the retry asks only for the rest.
func TestReadAtKeepsPartialProgress(t *testing.T) {
	data := pattern(1000)
	r, rm, st := newReader(data, 0)
	rm.fault = func(i int, p []byte) (int, error) {
		if i == 0 {
			return 300, retry.Transient(errors.New("connection reset"))
		}
		if i == 1 {
			return 200, nil // short without an error: retried too
		}
		return len(p), nil
	}
	p := make([]byte, 900)
	if n, err := r.ReadAt(context.Background(), p, 50); n != 900 || err != nil || !bytes.Equal(p, data[50:950]) {
		t.Fatalf("n=%d err=%v", n, err)
	}
	want := []call{{50, 900}, {350, 600}, {550, 400}}
	if got := rm.calls(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("fetches %v, want %v", got, want)
	}
	if s := st.Snapshot(); s.BytesFetched != 900 || s.Retries != 2 {
		t.Fatalf("stats %+v", s)
	}
}

func TestReadAtContextUnwrapped(t *testing.T) {
	data := pattern(1000)
	t.Run("before", func(t *testing.T) {
		r, rm, _ := newReader(data, 0)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := r.ReadAt(ctx, make([]byte, 10), 0); err != context.Canceled || len(rm.calls()) != 0 {
			t.Fatalf("err=%v calls %v", err, rm.calls())
		}
	})
	t.Run("during", func(t *testing.T) {
		r, rm, _ := newReader(data, 100)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		rm.fault = func(i int, p []byte) (int, error) {
			if i == 2 {
				cancel()
				return 10, retry.Transient(errors.New("aborted"))
			}
			return len(p), nil
		}
		n, err := r.ReadAt(ctx, make([]byte, 500), 0)
		if err != context.Canceled || n != 210 {
			t.Fatalf("n=%d err=%v, want 210 and context.Canceled itself", n, err)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		r, rm, _ := newReader(data, 0)
		ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
		defer cancel()
		rm.fault = func(i int, p []byte) (int, error) {
			<-ctx.Done()
			return 0, ctx.Err()
		}
		if _, err := r.ReadAt(ctx, make([]byte, 10), 0); err != context.DeadlineExceeded {
			t.Fatalf("err=%v", err)
		}
	})
}
