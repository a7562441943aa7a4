package fetch

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/h2kvm/h2kvm/vfs/source/stats"
)

// conn is a fake connection; fakeDialer counts what was dialed and closed.
type conn struct {
	id     int
	closed atomic.Bool
}

type fakeDialer struct {
	dialed, closed, live, maxLive atomic.Int64
	fail                          atomic.Bool
	mu                            sync.Mutex
	all                           []*conn
}

var errDial = errors.New("dial refused")

func (d *fakeDialer) config(size int, st *stats.Counter) PoolConfig[*conn] {
	return PoolConfig[*conn]{
		Size: size,
		Dial: func(ctx context.Context) (*conn, error) {
			if d.fail.Load() {
				return nil, errDial
			}
			c := &conn{id: int(d.dialed.Add(1))}
			l := d.live.Add(1)
			for m := d.maxLive.Load(); l > m && !d.maxLive.CompareAndSwap(m, l); m = d.maxLive.Load() {
			}
			d.mu.Lock()
			d.all = append(d.all, c)
			d.mu.Unlock()
			return c, nil
		},
		Close: func(c *conn) {
			if c.closed.Swap(true) {
				panic("connection closed twice")
			}
			d.closed.Add(1)
			d.live.Add(-1)
		},
		Stats: st,
	}
}

func TestPoolReuses(t *testing.T) {
	var d fakeDialer
	p := NewPool(d.config(2, nil))
	ctx := context.Background()
	a, err := p.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p.Put(a)
	b, err := p.Get(ctx)
	if err != nil || b != a || d.dialed.Load() != 1 {
		t.Fatalf("idle connection not reused: %v %v, %d dialed", b, err, d.dialed.Load())
	}
	p.Put(b)
}

func TestPoolBoundsConnections(t *testing.T) {
	var d fakeDialer
	p := NewPool(d.config(3, nil))
	ctx := context.Background()
	var held []*conn
	for range 3 {
		c, err := p.Get(ctx)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	// A fourth Get waits; a cancelled wait returns ctx.Err() itself.
	cctx, cancel := context.WithCancel(ctx)
	got := make(chan error, 1)
	go func() {
		_, err := p.Get(cctx)
		got <- err
	}()
	cancel()
	if err := <-got; err != context.Canceled {
		t.Fatalf("Get past Size: %v, want context.Canceled", err)
	}
	// Handing one back lets the next Get through with that connection.
	p.Put(held[0])
	c, err := p.Get(ctx)
	if err != nil || c != held[0] || d.dialed.Load() != 3 {
		t.Fatalf("got %v %v, %d dialed", c, err, d.dialed.Load())
	}
	for _, c := range append(held[1:], c) {
		p.Put(c)
	}
}

func TestPoolBoundedUnderLoad(t *testing.T) {
	var d fakeDialer
	st := new(stats.Counter)
	p := NewPool(d.config(4, st))
	var wg sync.WaitGroup
	var drops atomic.Int64
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 3))
			for range 200 {
				c, err := p.Get(context.Background())
				if err != nil {
					t.Error(err)
					return
				}
				if c.closed.Load() {
					t.Error("got a closed connection")
				}
				if r.IntN(5) == 0 {
					drops.Add(1)
					p.Drop(c)
				} else {
					p.Put(c)
				}
			}
		}()
	}
	wg.Wait()
	if m := d.maxLive.Load(); m > 4 {
		t.Fatalf("%d connections alive at once, Size is 4", m)
	}
	// Dials past the first four replace dropped connections; none is counted twice.
	if rc := st.Snapshot().Reconnects; rc > drops.Load() || d.dialed.Load() > 4 && rc == 0 {
		t.Fatalf("reconnects %d, dialed %d, dropped %d", rc, d.dialed.Load(), drops.Load())
	}
	p.Close()
	if d.live.Load() != 0 {
		t.Fatalf("%d connections left open after Close", d.live.Load())
	}
}

func TestPoolDropCountsReconnect(t *testing.T) {
	var d fakeDialer
	st := new(stats.Counter)
	p := NewPool(d.config(2, st))
	ctx := context.Background()
	a, _ := p.Get(ctx)
	b, _ := p.Get(ctx)
	if st.Snapshot().Reconnects != 0 {
		t.Fatal("first dials counted as reconnects")
	}
	p.Drop(a)
	if !a.closed.Load() {
		t.Fatal("dropped connection not closed")
	}
	c, err := p.Get(ctx)
	if err != nil || c == a || st.Snapshot().Reconnects != 1 {
		t.Fatalf("after a drop: %v %v, stats %+v", c, err, st.Snapshot())
	}
	// A plain dial (no connection lost) is not a reconnect.
	p.Put(b)
	p.Put(c)
	d2, _ := p.Get(ctx)
	d3, _ := p.Get(ctx)
	p.Put(d2)
	p.Put(d3)
	if st.Snapshot().Reconnects != 1 || d.dialed.Load() != 3 {
		t.Fatalf("stats %+v, %d dialed", st.Snapshot(), d.dialed.Load())
	}
}

func TestPoolDialErrorReleasesSlot(t *testing.T) {
	var d fakeDialer
	p := NewPool(d.config(1, nil))
	d.fail.Store(true)
	if _, err := p.Get(context.Background()); err != errDial {
		t.Fatalf("dial error not returned as is: %v", err)
	}
	d.fail.Store(false)
	// With Size 1, a leaked slot would make this Get wait until the deadline and fail.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := p.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p.Put(c)
}

func TestPoolReusableRefusesStale(t *testing.T) {
	var d fakeDialer
	st := new(stats.Counter)
	cfg := d.config(2, st)
	stale := map[int]bool{}
	var mu sync.Mutex
	cfg.Reusable = func(c *conn) bool { mu.Lock(); defer mu.Unlock(); return !stale[c.id] }
	p := NewPool(cfg)
	ctx := context.Background()
	a, _ := p.Get(ctx)
	p.Put(a)
	mu.Lock()
	stale[a.id] = true
	mu.Unlock()
	b, err := p.Get(ctx)
	if err != nil || b == a || !a.closed.Load() || st.Snapshot().Reconnects != 0 {
		t.Fatalf("stale idle connection: got %v %v, closed %v, stats %+v", b, err, a.closed.Load(), st.Snapshot())
	}
	p.Put(b)
}

func TestPoolClose(t *testing.T) {
	var d fakeDialer
	p := NewPool(d.config(3, nil))
	ctx := context.Background()
	idle, _ := p.Get(ctx)
	busy, _ := p.Get(ctx)
	p.Put(idle)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if !idle.closed.Load() || busy.closed.Load() {
		t.Fatalf("after Close: idle closed %v, busy closed %v", idle.closed.Load(), busy.closed.Load())
	}
	if _, err := p.Get(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after Close: %v", err)
	}
	p.Put(busy)
	if !busy.closed.Load() || d.live.Load() != 0 {
		t.Fatalf("connection handed back after Close left open")
	}
	if err := p.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
}
