package cache_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/h2kvm/h2kvm/vfs"
	"github.com/h2kvm/h2kvm/vfs/cache"
)

const MiB = 1 << 20

func newCache(t *testing.T, src vfs.Source, cfg cache.Config) *cache.Cache {
	t.Helper()
	if cfg.Path == "" {
		cfg.Path = filepath.Join(t.TempDir(), "cache")
	}
	c, err := cache.New(context.Background(), src, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// allocated returns the bytes the file at path holds on disk (st_blocks * 512).
func allocated(t *testing.T, path string) int64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

func readAll(t *testing.T, c *cache.Cache, piece int) {
	t.Helper()
	ctx := context.Background()
	buf := make([]byte, piece)
	for off := int64(0); off < c.Size(); off += int64(piece) {
		n, err := c.ReadAt(ctx, buf, off)
		if err != nil && !(err == io.EOF && off+int64(n) == c.Size()) {
			t.Fatalf("read %d at %d: %v", piece, off, err)
		}
		if err := checkBytes(buf[:n], off); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSecondReadFetchesNothing(t *testing.T) {
	r := newRemote(20*MiB + 12345) // short last chunk
	c := newCache(t, r, cache.Config{})
	readAll(t, c, 256<<10)
	first := r.bytes.Load()
	if first != r.size {
		t.Errorf("first read fetched %d bytes, want the source size %d", first, r.size)
	}
	readAll(t, c, 100000)
	if got := r.bytes.Load(); got != first {
		t.Errorf("second read fetched %d more bytes", got-first)
	}
	st := c.Stats()
	if st.CachedBytes != r.size || st.FetchedBytes != first || st.HitBytes < r.size {
		t.Errorf("stats %+v", st)
	}
	if st.HitRequests == 0 || st.HitRequests > st.ReadRequests {
		t.Errorf("hit requests %d of %d", st.HitRequests, st.ReadRequests)
	}
}

func TestReadPastEnd(t *testing.T) {
	r := newRemote(3*MiB + 10)
	c := newCache(t, r, cache.Config{})
	ctx := context.Background()
	buf := make([]byte, 100)
	n, err := c.ReadAt(ctx, buf, r.size-40)
	if n != 40 || err != io.EOF {
		t.Fatalf("read over end: %d, %v", n, err)
	}
	if err := checkBytes(buf[:n], r.size-40); err != nil {
		t.Fatal(err)
	}
	if n, err := c.ReadAt(ctx, buf, r.size); n != 0 || err != io.EOF {
		t.Fatalf("read at end: %d, %v", n, err)
	}
	if _, err := c.ReadAt(ctx, buf, -1); !errors.Is(err, vfs.ErrOutOfRange) {
		t.Fatalf("negative offset: %v", err)
	}
}

func TestMiddleReadOfHugeSource(t *testing.T) {
	r := newRemote(4 << 30)
	c := newCache(t, r, cache.Config{})
	buf := make([]byte, MiB)
	off := int64(2<<30) + 12345
	if _, err := c.ReadAt(context.Background(), buf, off); err != nil {
		t.Fatal(err)
	}
	if err := checkBytes(buf, off); err != nil {
		t.Fatal(err)
	}
	if got := r.bytes.Load(); got >= 8*MiB {
		t.Errorf("1 MiB read fetched %d bytes", got)
	}
	t.Logf("1 MiB unaligned read of a 4 GiB source fetched %d bytes in %d requests", r.bytes.Load(), r.requests.Load())
}

func TestBudgetBoundsDisk(t *testing.T) {
	size, limit := int64(1<<30), int64(64*MiB)
	if testing.Short() {
		size, limit = 256*MiB, 16*MiB
	}
	r := newRemote(size)
	b := cache.NewBudget(limit)
	path := filepath.Join(t.TempDir(), "cache")
	c := newCache(t, r, cache.Config{Path: path, Budget: b, Index: newMemIndex()})

	var peak atomic.Int64
	sample := func() {
		if a := allocated(t, path); a > peak.Load() {
			peak.Store(a)
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
				sample()
			}
		}
	})
	ctx := context.Background()
	buf := make([]byte, 4*MiB)
	for off := int64(0); off < size; off += int64(len(buf)) {
		if _, err := c.ReadAt(ctx, buf, off); err != nil {
			t.Fatal(err)
		}
		if err := checkBytes(buf, off); err != nil {
			t.Fatal(err)
		}
		sample()
		if u := b.Used(); u > limit+c.ChunkSize() {
			t.Fatalf("budget used %d > limit %d", u, limit)
		}
	}
	close(stop)
	wg.Wait()
	if p := peak.Load(); p > limit+c.ChunkSize() {
		t.Errorf("cache file held %d bytes on disk, limit %d + one chunk", p, limit)
	}
	st := c.Stats()
	t.Logf("read %d MiB through a %d MiB budget: peak on disk %.1f MiB, %d evictions, fetched %d MiB",
		size/MiB, limit/MiB, float64(peak.Load())/MiB, st.Evictions, st.FetchedBytes/MiB)
	if st.Evictions == 0 || st.CachedBytes > limit {
		t.Errorf("stats %+v", st)
	}
}

func TestSharedBudget(t *testing.T) {
	limit := int64(8 * MiB)
	b := cache.NewBudget(limit)
	dir := t.TempDir()
	var cs []*cache.Cache
	for i := range 3 {
		cs = append(cs, newCache(t, newRemote(32*MiB), cache.Config{Path: filepath.Join(dir, fmt.Sprint(i)), Budget: b, ChunkSize: 256 << 10}))
	}
	for _, c := range cs {
		readAll(t, c, MiB)
	}
	var total, cached int64
	for i, c := range cs {
		total += allocated(t, filepath.Join(dir, fmt.Sprint(i)))
		cached += c.Stats().CachedBytes
	}
	if total > limit || cached != b.Used() || cached > limit {
		t.Errorf("3 caches hold %d bytes on disk, %d accounted, budget used %d, limit %d", total, cached, b.Used(), limit)
	}
}

func TestConcurrentMissesFetchOnce(t *testing.T) {
	r := newRemote(8 * MiB)
	r.delay = 50 * time.Millisecond
	c := newCache(t, r, cache.Config{ReadAhead: -1})
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Go(func() {
			off := int64(3*MiB + i*1000)
			buf := make([]byte, 4000)
			if _, err := c.ReadAt(context.Background(), buf, off); err != nil {
				errs <- err
				return
			}
			errs <- checkBytes(buf, off)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := r.requests.Load(); n != 1 {
		t.Errorf("16 concurrent readers of one chunk caused %d fetches", n)
	}
}

func TestErrorsNotCached(t *testing.T) {
	r := newRemote(4 * MiB)
	boom := fmt.Errorf("HTTP 503: %w", vfs.ErrTransient)
	r.setFail(2*MiB, boom)
	r.delay = 20 * time.Millisecond
	c := newCache(t, r, cache.Config{ReadAhead: -1})
	ctx := context.Background()

	// Concurrent readers share the failing fetch and all see the error.
	var wg sync.WaitGroup
	var failed atomic.Int32
	for range 4 {
		wg.Go(func() {
			_, err := c.ReadAt(ctx, make([]byte, 10), 2*MiB+5)
			if errors.Is(err, vfs.ErrTransient) && strings.Contains(err.Error(), r.Name()) && strings.Contains(err.Error(), "chunk 2") {
				failed.Add(1)
			} else {
				t.Errorf("read of failing chunk: %v", err)
			}
		})
	}
	wg.Wait()
	if failed.Load() != 4 || r.reads(2*MiB) != 1 {
		t.Fatalf("%d readers failed, %d fetches", failed.Load(), r.reads(2*MiB))
	}
	// A read spanning a good and the bad chunk fails too, naming the bad one.
	if _, err := c.ReadAt(ctx, make([]byte, 2*MiB), MiB); !errors.Is(err, vfs.ErrTransient) {
		t.Fatalf("spanning read: %v", err)
	}
	r.setFail(2*MiB, nil)
	buf := make([]byte, 10)
	if _, err := c.ReadAt(ctx, buf, 2*MiB+5); err != nil {
		t.Fatalf("after the source recovered: %v", err)
	}
	if err := checkBytes(buf, 2*MiB+5); err != nil {
		t.Fatal(err)
	}
	if got := r.reads(2 * MiB); got != 3 {
		t.Errorf("chunk fetched %d times, want 3 (failure, failure, success)", got)
	}
}

func TestTruncatedSource(t *testing.T) {
	r := newRemote(4 * MiB)
	lying := &shrunk{remote: r, realSize: 3*MiB + 7}
	c := newCache(t, lying, cache.Config{})
	_, err := c.ReadAt(context.Background(), make([]byte, 10), 3*MiB+100)
	if !errors.Is(err, vfs.ErrTruncated) {
		t.Fatalf("read beyond the real end: %v", err)
	}
	t.Log(err)
}

// shrunk claims the size of remote but ends at realSize.
type shrunk struct {
	*remote
	realSize int64
}

func (s *shrunk) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if off+int64(len(p)) > s.realSize {
		n, _ := s.remote.ReadAt(ctx, p[:max(0, s.realSize-off)], off)
		return n, io.EOF
	}
	return s.remote.ReadAt(ctx, p, off)
}

func TestCancelledLeaderDoesNotFailWaiters(t *testing.T) {
	r := newRemote(4 * MiB)
	r.delay = 200 * time.Millisecond
	c := newCache(t, r, cache.Config{ReadAhead: -1})
	lctx, cancel := context.WithCancel(context.Background())
	leaderErr := make(chan error, 1)
	go func() {
		_, err := c.ReadAt(lctx, make([]byte, 10), 0)
		leaderErr <- err
	}()
	for r.requests.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	waiterErr := make(chan error, 1)
	go func() {
		buf := make([]byte, 10)
		_, err := c.ReadAt(context.Background(), buf, 5)
		if err == nil {
			err = checkBytes(buf, 5)
		}
		waiterErr <- err
	}()
	time.Sleep(20 * time.Millisecond)
	cancel()
	if err := <-leaderErr; !errors.Is(err, context.Canceled) {
		t.Errorf("leader: %v", err)
	}
	if err := <-waiterErr; err != nil {
		t.Errorf("waiter: %v", err)
	}
}

func TestReadAhead(t *testing.T) {
	r := newRemote(64 * MiB)
	c := newCache(t, r, cache.Config{ReadAhead: 4})
	ctx := context.Background()
	buf := make([]byte, 64<<10)
	for off := int64(0); off < 2*MiB; off += int64(len(buf)) {
		if _, err := c.ReadAt(ctx, buf, off); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for c.Stats().ReadAheads < 4 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	st := c.Stats()
	if st.ReadAheads < 4 {
		t.Fatalf("sequential reads started %d read-aheads", st.ReadAheads)
	}
	before := r.requests.Load()
	if _, err := c.ReadAt(ctx, buf, 5*MiB); err != nil {
		t.Fatal(err)
	}
	if r.requests.Load() != before && r.reads(5*MiB) > 1 {
		t.Errorf("read-ahead chunk fetched again")
	}
	// Random reads start no read-ahead.
	r2 := newRemote(64 * MiB)
	c2 := newCache(t, r2, cache.Config{ReadAhead: 4})
	for _, off := range []int64{40 * MiB, 3 * MiB, 20 * MiB, 60 * MiB, 9 * MiB} {
		if _, err := c2.ReadAt(ctx, buf, off); err != nil {
			t.Fatal(err)
		}
	}
	if st := c2.Stats(); st.ReadAheads != 0 || st.FetchRequests != 5 {
		t.Errorf("random reads: %+v", st)
	}
}

func TestReopenRestores(t *testing.T) {
	r := newRemote(16*MiB + 100)
	ix := newMemIndex()
	path := filepath.Join(t.TempDir(), "cache")
	ctx := context.Background()
	c, err := cache.New(ctx, r, cache.Config{Path: path, Index: ix, ReadAhead: -1})
	if err != nil {
		t.Fatal(err)
	}
	ix.check = func(ci cache.ChunkInfo) error { return chunkOnDisk(path, ci, c.ChunkSize(), r.size) }
	offs := []int64{0, 5 * MiB, 16 * MiB}
	for _, off := range offs {
		if _, err := c.ReadAt(ctx, make([]byte, 50), off); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if ix.count() != 3 {
		t.Fatalf("index holds %d chunks after close, want 3", ix.count())
	}
	fetched := r.bytes.Load()
	c2 := newCache(t, r, cache.Config{Path: path, Index: ix, ReadAhead: -1})
	if st := c2.Stats(); st.CachedBytes != 2*MiB+100 {
		t.Errorf("reopened cache holds %d bytes", st.CachedBytes)
	}
	for _, off := range offs {
		buf := make([]byte, 100)
		n, err := c2.ReadAt(ctx, buf, off)
		if err != nil && err != io.EOF {
			t.Fatal(err)
		}
		if err := checkBytes(buf[:n], off); err != nil {
			t.Fatal(err)
		}
	}
	if got := r.bytes.Load(); got != fetched {
		t.Errorf("reopened cache fetched %d bytes", got-fetched)
	}
	// A different chunk size invalidates the records.
	c2.Close()
	c3 := newCache(t, r, cache.Config{Path: path, Index: ix, ChunkSize: 512 << 10})
	if st := c3.Stats(); st.CachedBytes != 0 || allocated(t, path) != 0 {
		t.Errorf("cache with another layout kept %d bytes (%d on disk)", st.CachedBytes, allocated(t, path))
	}
}

// chunkOnDisk checks that chunk ci's bytes are in the cache file (crash ordering: data before
// record).
func chunkOnDisk(path string, ci cache.ChunkInfo, cs, size int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	n := min(cs, size-ci.Index*cs)
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, ci.Index*cs); err != nil {
		return err
	}
	if err := checkBytes(buf, ci.Index*cs); err != nil {
		return fmt.Errorf("chunk %d recorded before its data was written: %w", ci.Index, err)
	}
	return nil
}

func TestUnrecordedDataPunchedOnOpen(t *testing.T) {
	r := newRemote(8 * MiB)
	ix := newMemIndex()
	path := filepath.Join(t.TempDir(), "cache")
	c := newCache(t, r, cache.Config{Path: path, Index: ix, ReadAhead: -1})
	if _, err := c.ReadAt(context.Background(), make([]byte, 10), 0); err != nil {
		t.Fatal(err)
	}
	c.Close()
	// A crash after writing chunk 5 but before recording it: bytes on disk, no record.
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(expect(5*MiB, MiB), 5*MiB); err != nil {
		t.Fatal(err)
	}
	f.Close()
	newCache(t, r, cache.Config{Path: path, Index: ix})
	if a := allocated(t, path); a != MiB {
		t.Errorf("after reopen the file holds %d bytes, want only the recorded chunk (%d)", a, MiB)
	}
}

func TestPriorityEvictedLast(t *testing.T) {
	cs := int64(64 << 10)
	r := newRemote(64 * MiB)
	b := cache.NewBudget(8 * cs)
	c := newCache(t, r, cache.Config{Budget: b, ChunkSize: cs, ReadAhead: -1})
	ctx := context.Background()
	c.Prioritize(40*cs+10, 1) // a grain directory, say
	for _, off := range []int64{0, 40 * cs} {
		if _, err := c.ReadAt(ctx, make([]byte, 10), off); err != nil {
			t.Fatal(err)
		}
	}
	for i := int64(100); i < 200; i++ {
		if _, err := c.ReadAt(ctx, make([]byte, 10), i*cs); err != nil {
			t.Fatal(err)
		}
	}
	before := r.requests.Load()
	for _, off := range []int64{0, 40 * cs} {
		if _, err := c.ReadAt(ctx, make([]byte, 10), off); err != nil {
			t.Fatal(err)
		}
	}
	if r.requests.Load() != before {
		t.Errorf("priority chunks were evicted before %d ordinary ones", 100)
	}
	// The ordinary chunks were evicted least recently used first: the last ones are still there.
	if _, err := c.ReadAt(ctx, make([]byte, 10), 199*cs); err != nil || r.requests.Load() != before {
		t.Errorf("most recently used chunk was evicted (err %v)", err)
	}
	if _, err := c.ReadAt(ctx, make([]byte, 10), 100*cs); err != nil || r.requests.Load() != before+1 {
		t.Errorf("least recently used chunk was kept (err %v)", err)
	}
}

func TestClosed(t *testing.T) {
	c := newCache(t, newRemote(MiB), cache.Config{})
	c.Close()
	if _, err := c.ReadAt(context.Background(), make([]byte, 1), 0); !errors.Is(err, cache.ErrClosed) {
		t.Fatalf("read after close: %v", err)
	}
}
