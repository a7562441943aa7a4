package fetch

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/h2kvm/h2kvm/vfs/source/stats"
)

// PoolConfig configures a Pool.
type PoolConfig[C any] struct {
	// Size is the largest number of connections, in use or idle (at least 1).
	Size int
	// Dial makes one connection. Its errors are returned by Get as they are (mark the ones
	// worth retrying with retry.Transient).
	Dial func(ctx context.Context) (C, error)
	// Close releases a connection that is dropped, or idle when the pool closes. It must not
	// block for long (start a goroutine for a close that may wait on a dead peer).
	Close func(C)
	// Reusable, when set, is asked before an idle connection is handed out again; one it
	// refuses is closed (not counted as lost) and the next one is tried.
	Reusable func(C) bool
	// Stats, when set, counts the reconnects: dials that replace a dropped connection.
	Stats *stats.Counter
}

// Pool holds up to Size connections of type C for parallel requests, dialed lazily and reused.
// It is safe for concurrent use; no I/O happens under its mutex.
type Pool[C any] struct {
	// set once
	cfg  PoolConfig[C]
	sem  chan struct{} // one token per connection in use; idle ones hold none
	lost atomic.Int64  // connections dropped and not yet replaced

	mu     sync.Mutex // guards below
	idle   []C
	closed bool
}

// NewPool returns an empty pool.
func NewPool[C any](cfg PoolConfig[C]) *Pool[C] {
	cfg.Size = max(cfg.Size, 1)
	return &Pool[C]{cfg: cfg, sem: make(chan struct{}, cfg.Size)}
}

// Get returns an idle connection or a new one, waiting while Size are in use. The caller MUST
// hand it back with Put or Drop. A context that ends while waiting returns ctx.Err().
func (p *Pool[C]) Get(ctx context.Context) (C, error) {
	var zero C
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return zero, ctx.Err()
	}
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			<-p.sem
			return zero, ErrClosed
		}
		n := len(p.idle)
		if n == 0 {
			p.mu.Unlock()
			break
		}
		c := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		if p.cfg.Reusable == nil || p.cfg.Reusable(c) {
			return c, nil
		}
		p.cfg.Close(c)
	}
	c, err := p.cfg.Dial(ctx)
	if err != nil {
		<-p.sem
		return zero, err
	}
	for {
		l := p.lost.Load()
		if l <= 0 {
			break
		}
		if p.lost.CompareAndSwap(l, l-1) {
			p.cfg.Stats.AddReconnect()
			break
		}
	}
	return c, nil
}

// Put returns a usable connection for reuse (it is closed when the pool is closed).
func (p *Pool[C]) Put(c C) {
	p.mu.Lock()
	if !p.closed {
		p.idle = append(p.idle, c)
		p.mu.Unlock()
		<-p.sem
		return
	}
	p.mu.Unlock()
	p.cfg.Close(c)
	<-p.sem
}

// Drop closes a connection that is no longer usable; the dial that replaces it counts as a
// reconnect.
func (p *Pool[C]) Drop(c C) {
	p.lost.Add(1)
	p.cfg.Close(c)
	<-p.sem
}

// Close closes the idle connections; connections in use are closed when handed back. Later
// Gets fail with ErrClosed. Close is idempotent and returns nil.
func (p *Pool[C]) Close() error {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	p.mu.Unlock()
	for _, c := range idle {
		p.cfg.Close(c)
	}
	return nil
}
