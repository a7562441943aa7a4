package nbdserve

import (
	"context"
	"sync/atomic"

	"golang.org/x/sync/semaphore"
)

// budget is the server-wide cap on the READ and WRITE payload bytes held by the requests in
// flight of every connection together (Options.MaxBufferedBytes). It also keeps the counters
// behind ServerStats.BufferedBytes and PeakBufferedBytes. Its methods may be called
// concurrently.
type budget struct {
	// set once
	sem *semaphore.Weighted

	held, peak atomic.Int64
}

func newBudget(limit int64) *budget {
	return &budget{sem: semaphore.NewWeighted(limit)}
}

// acquire waits until n more bytes fit in the budget or ctx ends (then it returns ctx's error
// and holds nothing).
func (b *budget) acquire(ctx context.Context, n int64) error {
	if err := b.sem.Acquire(ctx, n); err != nil {
		return err
	}
	h := b.held.Add(n)
	for p := b.peak.Load(); h > p && !b.peak.CompareAndSwap(p, h); p = b.peak.Load() {
	}
	return nil
}

// release returns n bytes obtained from acquire.
func (b *budget) release(n int64) {
	b.held.Add(-n)
	b.sem.Release(n)
}
