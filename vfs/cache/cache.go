package cache

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/h2kvm/h2kvm/vfs"
)

// Defaults of Config.
const (
	DefaultChunkSize            = 1 << 20
	DefaultReadAhead            = 4
	DefaultReadAheadConcurrency = 2
	DefaultConcurrency          = 4
	DefaultCommitEvery          = 32
	DefaultCommitDelay          = time.Second
)

// Config configures a Cache. Path is required; every other zero field takes its default.
type Config struct {
	// Path is the sparse local cache file; it is created if missing. One file per source.
	Path string
	// ChunkSize is the fetch and eviction unit in bytes (default 1 MiB). A multiple of 4096 keeps
	// hole punching exact.
	ChunkSize int64
	// Index persists the presence map. Nil: nothing is persisted, the file is reset on New.
	Index Index
	// Budget bounds the local bytes, shared with other caches. Nil: a private unlimited Budget.
	Budget *Budget
	// ReadAhead is the number of chunks fetched ahead of a sequential reader (default 4;
	// negative disables read-ahead).
	ReadAhead int
	// ReadAheadConcurrency bounds the read-ahead fetches in flight for this source (default 2).
	ReadAheadConcurrency int
	// Concurrency bounds the chunk fetches in flight for one ReadAt spanning chunks (default 4).
	Concurrency int
	// PriorityHead is the number of bytes at the start of the source whose chunks are priority
	// (evicted last). 0 means the first chunk; negative means none.
	PriorityHead int64
	// CommitEvery is the number of newly written chunks after which the file is synced and
	// their presence recorded (default 32); CommitDelay bounds how long a written chunk waits
	// for that (default 1s). Sync and Close commit at once.
	CommitEvery int
	CommitDelay time.Duration
}

func (cfg *Config) setDefaults() {
	if cfg.ChunkSize <= 0 {
		cfg.ChunkSize = DefaultChunkSize
	}
	if cfg.ReadAhead == 0 {
		cfg.ReadAhead = DefaultReadAhead
	}
	if cfg.ReadAheadConcurrency <= 0 {
		cfg.ReadAheadConcurrency = DefaultReadAheadConcurrency
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.PriorityHead == 0 {
		cfg.PriorityHead = cfg.ChunkSize
	}
	if cfg.CommitEvery <= 0 {
		cfg.CommitEvery = DefaultCommitEvery
	}
	if cfg.CommitDelay <= 0 {
		cfg.CommitDelay = DefaultCommitDelay
	}
}

// Stats are counters of one Cache since New.
type Stats struct {
	FetchRequests int64 // reads sent to the source
	FetchedBytes  int64 // bytes received from the source
	ReadRequests  int64 // ReadAt calls
	HitRequests   int64 // ReadAt calls served without waiting for the source
	HitBytes      int64 // bytes served from chunks that were present when asked for
	ReadAheads    int64 // chunk fetches started by read-ahead
	Evictions     int64 // chunks evicted
	CachedBytes   int64 // bytes of chunks present now
	LocalErrors   int64 // failures of the cache file or Index (the data was still served)
}

type stats struct {
	fetchRequests, fetchedBytes, readRequests, hitRequests, hitBytes atomic.Int64
	readAheads, evictions, localErrors                               atomic.Int64
}

type chunkState uint8

const (
	stateFetching chunkState = iota + 1
	statePresent
	stateEvicting
)

// chunk is the state of one chunk that is being fetched, present or being evicted. Absent
// chunks have no entry. Every field is guarded by the Budget's mu, except c, idx and n (set once).
type chunk struct {
	c    *Cache
	idx  int64
	n    int64
	done chan struct{} // closed when fetching or evicting ends
	err  error         // fetch error, set before done is closed
	seq  uint64
	hi   int       // index in the Budget's LRU heap, -1 when not in it
	pins int       // readers copying from the cache file
	mem  *chunkBuf // the chunk's bytes while it is among the recently fetched (c.recent)
	prio bool

	state chunkState
}

// Cache is a vfs.Source that serves reads from a local sparse file, fetching missing chunks from
// the wrapped source. Safe for concurrent use.
type Cache struct {
	// Set once.
	src     vfs.Source
	cfg     Config
	b       *Budget
	f       *os.File
	dio     *directWriter
	size    int64
	nchunks int64
	ctx     context.Context // cancelled by Close; read-ahead runs under it
	cancel  context.CancelFunc
	ra      errgroup.Group // read-ahead fetches
	bufs    sync.Pool      // *chunkBuf of ChunkSize bytes, aligned for O_DIRECT
	active  sync.WaitGroup // ReadAt calls in progress
	stats   stats

	// Guarded by b.mu.
	chunks      map[int64]*chunk
	prio        map[int64]bool // chunks named by Prioritize (present or not)
	pending     map[int64]bool // present chunks not yet recorded in the Index
	touched     map[int64]bool // recorded chunks whose Seq or Priority changed since
	timer       *time.Timer    // commit timer, nil when none is scheduled
	cachedBytes int64
	closed      bool
	recent      []*chunk // chunks whose bytes are kept in memory, oldest first; capacity fixed

	fclosed bool // guarded by b.writeMu: the cache file is closed

	raMu    sync.Mutex // leaf lock
	streams [8]int64   // guarded by raMu: where recent sequential streams will continue
	nextSt  int        // guarded by raMu
	raQueue []int64    // guarded by raMu: chunks to read ahead, oldest first
}

var _ vfs.Source = (*Cache)(nil)

// New wraps src in a Cache backed by the file cfg.Path. When cfg.Index holds records for the same
// layout (chunk size and source size), the chunks they name are served from the file without
// fetching. New does not take ownership of src: Close does not close it.
//
// The Cache holds an exclusive lock (flock) on its file until Close: New on a file another
// Cache holds, in this process or another, fails with ErrLocked and leaves the file alone.
func New(ctx context.Context, src vfs.Source, cfg Config) (*Cache, error) {
	if cfg.Path == "" {
		return nil, fmt.Errorf("cache: %s: no cache file path", src.Name())
	}
	cfg.setDefaults()
	if cfg.Budget == nil {
		cfg.Budget = NewBudget(0)
	}
	f, err := os.OpenFile(cfg.Path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cache: %s: %w", src.Name(), err)
	}
	// Restoring resets or punches every range the Index does not vouch for, which would turn
	// the chunks another Cache on the same file has fetched (and not yet recorded) into zeros.
	// The lock is held by the open file and released by Close (or the process's end).
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("cache: %s: %s is open in another cache (a second daemon on the same state directory?): %w",
				src.Name(), cfg.Path, ErrLocked)
		}
		return nil, fmt.Errorf("cache: %s: lock %s: %w", src.Name(), cfg.Path, err)
	}
	size := src.Size()
	c := &Cache{
		src: src, cfg: cfg, b: cfg.Budget, f: f, size: size,
		nchunks: (size + cfg.ChunkSize - 1) / cfg.ChunkSize,
		chunks:  map[int64]*chunk{}, prio: map[int64]bool{},
		pending: map[int64]bool{}, touched: map[int64]bool{},
		dio: openDirect(cfg.Path),
		// Enough for the read-ahead window and the fetches of one ReadAt.
		recent: make([]*chunk, 0, max(cfg.ReadAhead, 0)+cfg.Concurrency),
	}
	for i := range c.streams {
		c.streams[i] = -1
	}
	c.ra.SetLimit(cfg.ReadAheadConcurrency)
	c.ctx, c.cancel = context.WithCancel(context.Background())
	if err := c.restore(ctx); err != nil {
		c.cancel()
		c.dio.close()
		f.Close()
		return nil, err
	}
	return c, nil
}

// Size returns the size of the source.
func (c *Cache) Size() int64 { return c.size }

// Name returns the name of the source.
func (c *Cache) Name() string { return c.src.Name() }

// Unwrap returns the wrapped source.
func (c *Cache) Unwrap() vfs.Source { return c.src }

// ChunkSize returns the chunk size in use.
func (c *Cache) ChunkSize() int64 { return c.cfg.ChunkSize }

// Stats returns the counters of c.
func (c *Cache) Stats() Stats {
	c.b.mu.Lock()
	cached := c.cachedBytes
	c.b.mu.Unlock()
	return Stats{
		FetchRequests: c.stats.fetchRequests.Load(),
		FetchedBytes:  c.stats.fetchedBytes.Load(),
		ReadRequests:  c.stats.readRequests.Load(),
		HitRequests:   c.stats.hitRequests.Load(),
		HitBytes:      c.stats.hitBytes.Load(),
		ReadAheads:    c.stats.readAheads.Load(),
		Evictions:     c.stats.evictions.Load(),
		CachedBytes:   cached,
		LocalErrors:   c.stats.localErrors.Load(),
	}
}

// ReadAt reads len(p) bytes at off, following io.ReaderAt. May be called concurrently.
func (c *Cache) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, fmt.Errorf("cache: %s: read at negative offset %d: %w", c.Name(), off, vfs.ErrOutOfRange)
	}
	if off >= c.size {
		return 0, io.EOF
	}
	var eof error
	if int64(len(p)) > c.size-off {
		p, eof = p[:c.size-off], io.EOF
	}
	if len(p) == 0 {
		return 0, eof
	}
	c.b.mu.Lock()
	if c.closed {
		c.b.mu.Unlock()
		return 0, fmt.Errorf("cache: %s: %w", c.Name(), ErrClosed)
	}
	c.active.Add(1)
	c.b.mu.Unlock()
	defer c.active.Done()
	c.stats.readRequests.Add(1)

	end := off + int64(len(p))
	first, last := off/c.cfg.ChunkSize, (end-1)/c.cfg.ChunkSize
	c.noteAccess(off, end, last)
	part := func(i int64) ([]byte, int64) {
		lo, hi := max(off, i*c.cfg.ChunkSize), min(end, (i+1)*c.cfg.ChunkSize)
		return p[lo-off : hi-off], lo
	}
	var allHit atomic.Bool
	allHit.Store(true)
	if first == last {
		hit, err := c.readChunk(ctx, first, p, off)
		if err != nil {
			return 0, err
		}
		allHit.Store(hit)
	} else {
		var g errgroup.Group
		g.SetLimit(c.cfg.Concurrency)
		for i := first; i <= last; i++ {
			dst, at := part(i)
			g.Go(func() error {
				hit, err := c.readChunk(ctx, i, dst, at)
				if !hit {
					allHit.Store(false)
				}
				return err
			})
		}
		if err := g.Wait(); err != nil {
			return 0, err
		}
	}
	if allHit.Load() {
		c.stats.hitRequests.Add(1)
	}
	return len(p), eof
}

// Prioritize marks the chunks covering [off, off+length) as priority: evicted only after every
// other chunk. It applies to chunks present now and fetched later, and is persisted.
func (c *Cache) Prioritize(off, length int64) {
	if length <= 0 || off >= c.size {
		return
	}
	off = max(off, 0)
	end := min(off+length, c.size)
	c.b.mu.Lock()
	defer c.b.mu.Unlock()
	for i := off / c.cfg.ChunkSize; i <= (end-1)/c.cfg.ChunkSize; i++ {
		c.prio[i] = true
		if ch := c.chunks[i]; ch != nil && !ch.prio {
			ch.prio = true
			if ch.hi >= 0 {
				heap.Fix(&c.b.lru, ch.hi)
			}
			if ch.state == statePresent && !c.pending[i] {
				c.touched[i] = true
			}
		}
	}
	c.scheduleCommitLocked()
}

func (c *Cache) isPrioLocked(i int64) bool {
	return c.prio[i] || i*c.cfg.ChunkSize < c.cfg.PriorityHead
}

// Sync writes every fetched chunk's presence (and recent uses) to the Index, after syncing the
// cache file.
func (c *Cache) Sync(ctx context.Context) error {
	c.b.writeMu.Lock()
	defer c.b.writeMu.Unlock()
	return c.commitLocked(ctx)
}

// Close stops read-ahead, waits for reads in progress, commits presence records and closes the
// cache file. The chunks stay in the file and the Index for a later New. It does not close the
// wrapped source.
func (c *Cache) Close() error {
	c.b.mu.Lock()
	if c.closed {
		c.b.mu.Unlock()
		return nil
	}
	c.closed = true
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	c.b.mu.Unlock()
	c.cancel()
	c.active.Wait()
	c.ra.Wait()

	c.b.writeMu.Lock()
	err := c.commitLocked(context.Background())
	c.b.mu.Lock()
	for _, ch := range c.chunks {
		if ch.hi >= 0 {
			heap.Remove(&c.b.lru, ch.hi)
		}
		if ch.state == statePresent {
			c.b.used -= ch.n
		}
	}
	c.cachedBytes = 0
	for _, ch := range c.recent {
		c.dropRecentLocked(ch)
	}
	c.recent = c.recent[:0]
	c.b.mu.Unlock()
	c.fclosed = true
	c.dio.close()
	if cerr := c.f.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("cache: %s: %w", c.Name(), cerr)
	}
	c.b.writeMu.Unlock()
	return err
}

func isCtxErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}
