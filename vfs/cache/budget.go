package cache

import (
	"container/heap"
	"context"
	"sync"
)

// Lock order (this file and cache.go): Budget.writeMu before Budget.mu; Cache.raMu is a leaf.
// Budget.mu guards the chunk state of every Cache attached to the Budget (one lock, so eviction
// across caches needs no lock order between caches); no I/O is done under it. Budget.writeMu
// serializes everything that changes cache files or Index records: reserving space, evicting,
// writing a fetched chunk, committing presence records. Local disk I/O and Index calls happen
// under writeMu, never remote I/O.

// Budget bounds the bytes that the local files of a set of caches hold. One Budget is shared by
// every Cache of a daemon. It is safe for concurrent use.
type Budget struct {
	limit int64 // set once; 0 means unlimited

	writeMu sync.Mutex

	mu   sync.Mutex
	used int64   // guarded by mu: bytes of present chunks plus chunks being written
	seq  uint64  // guarded by mu: last use sequence number handed out
	lru  lruHeap // guarded by mu: present chunks of all attached caches, least valuable first
}

// NewBudget returns a Budget of limit bytes; limit <= 0 means unlimited.
func NewBudget(limit int64) *Budget {
	return &Budget{limit: max(limit, 0)}
}

// Limit returns the limit in bytes (0: unlimited).
func (b *Budget) Limit() int64 { return b.limit }

// Used returns the bytes of present chunks of all open caches using b.
func (b *Budget) Used() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// nextSeqLocked returns a fresh use sequence number. b.mu held.
func (b *Budget) nextSeqLocked() uint64 {
	b.seq++
	return b.seq
}

// lowWater is the level eviction brings usage down to, so that evictions (each an Index update)
// come in batches rather than one per fetched chunk.
func (b *Budget) lowWater() int64 {
	return b.limit - b.limit/16
}

// reserveLocked accounts n bytes for a chunk about to be written and picks the victims to evict
// first. The victims are out of the LRU and in state evicting. b.mu held.
func (b *Budget) reserveLocked(n int64) []*chunk {
	var victims, pinned []*chunk
	if b.limit > 0 && b.used+n > b.limit {
		for b.used+n > b.lowWater() && b.lru.Len() > 0 {
			ch := heap.Pop(&b.lru).(*chunk)
			if ch.pins > 0 {
				pinned = append(pinned, ch)
				continue
			}
			ch.state = stateEvicting
			ch.done = make(chan struct{})
			b.used -= ch.n
			ch.c.cachedBytes -= ch.n
			victims = append(victims, ch)
		}
		for _, ch := range pinned {
			heap.Push(&b.lru, ch)
		}
	}
	b.used += n
	return victims
}

// evict removes victims from their Index and punches their ranges out of their cache files.
// b.writeMu held. A victim whose Index update fails stays present (its bytes are still on
// disk, still recorded); the error is returned.
func (b *Budget) evict(ctx context.Context, victims []*chunk) error {
	byCache := map[*Cache][]*chunk{}
	for _, ch := range victims {
		byCache[ch.c] = append(byCache[ch.c], ch)
	}
	var firstErr error
	for c, chs := range byCache {
		err := c.evictChunks(ctx, chs)
		b.mu.Lock()
		for _, ch := range chs {
			if err != nil {
				ch.state = statePresent
				b.used += ch.n
				c.cachedBytes += ch.n
				heap.Push(&b.lru, ch)
			} else {
				delete(c.chunks, ch.idx)
				c.stats.evictions.Add(1)
			}
			close(ch.done)
			ch.done = nil
		}
		b.mu.Unlock()
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}

// lruHeap orders present chunks by eviction preference: non-priority before priority, then
// least recently used first.
type lruHeap []*chunk

func (h lruHeap) Len() int { return len(h) }
func (h lruHeap) Less(i, j int) bool {
	if h[i].prio != h[j].prio {
		return !h[i].prio
	}
	return h[i].seq < h[j].seq
}
func (h lruHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].hi = i
	h[j].hi = j
}
func (h *lruHeap) Push(x any) {
	ch := x.(*chunk)
	ch.hi = len(*h)
	*h = append(*h, ch)
}
func (h *lruHeap) Pop() any {
	old := *h
	ch := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	ch.hi = -1
	return ch
}
