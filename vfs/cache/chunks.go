package cache

import (
	"cmp"
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/h2kvm/h2kvm/vfs"
)

// chunkLen returns the length of chunk i (the last chunk may be short).
func (c *Cache) chunkLen(i int64) int64 {
	return min(c.cfg.ChunkSize, c.size-i*c.cfg.ChunkSize)
}

// readChunk copies the bytes of chunk i at [at, at+len(dst)) into dst, fetching the chunk when
// it is absent. With dst nil it only makes the chunk present (read-ahead). hit reports that the
// chunk was present when asked for.
func (c *Cache) readChunk(ctx context.Context, i int64, dst []byte, at int64) (hit bool, err error) {
	b := c.b
	waited := false
	for {
		b.mu.Lock()
		ch := c.chunks[i]
		if ch == nil {
			ch = &chunk{c: c, idx: i, n: c.chunkLen(i), state: stateFetching, done: make(chan struct{}), hi: -1}
			c.chunks[i] = ch
			b.mu.Unlock()
			cb, err := c.fetch(ctx, ch)
			if err != nil {
				return false, err
			}
			if dst != nil {
				copy(dst, cb.b[at-i*c.cfg.ChunkSize:])
			}
			c.release(cb)
			return false, nil
		}
		if ch.state == statePresent {
			ch.seq = b.nextSeqLocked()
			heap.Fix(&b.lru, ch.hi)
			if !c.pending[i] {
				c.touched[i] = true
				c.scheduleCommitLocked()
			}
			if dst == nil {
				b.mu.Unlock()
				return !waited, nil
			}
			if cb := ch.mem; cb != nil {
				cb.refs++
				b.mu.Unlock()
				n := copy(dst, cb.b[at-i*c.cfg.ChunkSize:])
				c.release(cb)
				if !waited {
					c.stats.hitBytes.Add(int64(n))
				}
				return !waited, nil
			}
			ch.pins++
			b.mu.Unlock()
			n, err := c.f.ReadAt(dst, at)
			b.mu.Lock()
			ch.pins--
			b.mu.Unlock()
			if n < len(dst) {
				if err == nil || err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return false, fmt.Errorf("cache: %s: read cache file %s at %d: %w", c.Name(), c.cfg.Path, at, err)
			}
			if !waited {
				c.stats.hitBytes.Add(int64(n))
			}
			return !waited, nil
		}
		// Fetching or evicting: wait, then look again.
		done, fetching := ch.done, ch.state == stateFetching
		b.mu.Unlock()
		waited = true
		select {
		case <-done:
		case <-ctx.Done():
			return false, ctx.Err()
		}
		if fetching && ch.err != nil && !isCtxErr(ch.err) {
			return false, ch.err
		}
	}
}

// fetch reads chunk ch from the source and stores it. On failure the chunk is forgotten (the
// error is not cached) and every waiter gets the error. A failure to store a fetched chunk
// locally is counted, not returned: the bytes are served from memory.
func (c *Cache) fetch(ctx context.Context, ch *chunk) (*chunkBuf, error) {
	off := ch.idx * c.cfg.ChunkSize
	fctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(c.ctx, cancel) // Close cancels fetches
	cb := c.getBuf(ch.n)
	buf := cb.b
	c.stats.fetchRequests.Add(1)
	n, err := c.src.ReadAt(fctx, buf, off)
	stop()
	cancel()
	c.stats.fetchedBytes.Add(int64(n))
	switch {
	case n == len(buf):
		err = nil
	case err == nil || err == io.EOF:
		err = fmt.Errorf("cache: %s: chunk %d: source returned %d of %d bytes at %d (size %d): %w",
			c.Name(), ch.idx, n, ch.n, off, c.size, vfs.ErrTruncated)
	case isCtxErr(err):
	default:
		err = fmt.Errorf("cache: %s: chunk %d (%d bytes at %d): %w", c.Name(), ch.idx, ch.n, off, err)
	}
	if err != nil {
		c.b.mu.Lock()
		delete(c.chunks, ch.idx)
		ch.err = err
		close(ch.done)
		c.releaseLocked(cb)
		c.b.mu.Unlock()
		return nil, err
	}
	if err := c.storeChunk(ch, cb); err != nil && !errors.Is(err, ErrClosed) {
		c.stats.localErrors.Add(1)
	}
	return cb, nil
}

// storeChunk evicts what the Budget needs evicted, writes buf at the chunk's offset of the cache
// file and makes the chunk present. On failure the chunk is forgotten.
func (c *Cache) storeChunk(ch *chunk, cb *chunkBuf) error {
	b := c.b
	buf := cb.b
	b.writeMu.Lock()
	defer b.writeMu.Unlock()
	fail := func(err error, reserved bool) error {
		b.mu.Lock()
		if reserved {
			b.used -= ch.n
		}
		delete(c.chunks, ch.idx)
		close(ch.done)
		b.mu.Unlock()
		return err
	}
	b.mu.Lock()
	if c.closed {
		b.mu.Unlock()
		return fail(ErrClosed, false)
	}
	victims := b.reserveLocked(ch.n)
	b.mu.Unlock()
	ctx := context.Background() // a stored chunk must not be left half-recorded by a cancel
	if len(victims) > 0 {
		if err := b.evict(ctx, victims); err != nil {
			return fail(err, true)
		}
	}
	at := ch.idx * c.cfg.ChunkSize
	done, err := c.dio.writeAt(buf, at)
	if !done && err == nil {
		_, err = c.f.WriteAt(buf, at)
	}
	if err != nil {
		return fail(fmt.Errorf("cache: %s: write cache file %s: %w", c.Name(), c.cfg.Path, err), true)
	}
	b.mu.Lock()
	c.keepRecentLocked(ch, cb)
	ch.state = statePresent
	ch.seq = b.nextSeqLocked()
	ch.prio = c.isPrioLocked(ch.idx)
	heap.Push(&b.lru, ch)
	c.cachedBytes += ch.n
	c.pending[ch.idx] = true
	delete(c.touched, ch.idx)
	close(ch.done)
	ch.done = nil
	commitNow := len(c.pending) >= c.cfg.CommitEvery
	if !commitNow {
		c.scheduleCommitLocked()
	}
	b.mu.Unlock()
	if commitNow {
		if err := c.commitLocked(ctx); err != nil {
			c.stats.localErrors.Add(1)
		}
	}
	return nil
}

// scheduleCommitLocked arms the commit timer when there is something to commit. b.mu held.
func (c *Cache) scheduleCommitLocked() {
	if c.timer != nil || c.closed || c.cfg.Index == nil || len(c.pending)+len(c.touched) == 0 {
		return
	}
	c.timer = time.AfterFunc(c.cfg.CommitDelay, c.timerCommit)
}

func (c *Cache) timerCommit() {
	c.b.writeMu.Lock()
	defer c.b.writeMu.Unlock()
	c.b.mu.Lock()
	c.timer = nil
	c.b.mu.Unlock()
	if err := c.commitLocked(context.Background()); err != nil {
		c.stats.localErrors.Add(1)
	}
}

// commitLocked syncs the cache file, then records pending chunks present and persists touched
// chunks' use order. b.writeMu held.
func (c *Cache) commitLocked(ctx context.Context) error {
	if c.fclosed {
		return nil
	}
	b := c.b
	b.mu.Lock()
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	info := func(set map[int64]bool) []ChunkInfo {
		var out []ChunkInfo
		for i := range set {
			if ch := c.chunks[i]; ch != nil && ch.state == statePresent {
				out = append(out, ChunkInfo{Index: i, Seq: ch.seq, Priority: ch.prio})
			}
		}
		clear(set)
		slices.SortFunc(out, func(a, b ChunkInfo) int { return cmp.Compare(a.Index, b.Index) })
		return out
	}
	marks, touches := info(c.pending), info(c.touched)
	b.mu.Unlock()
	if c.cfg.Index == nil {
		return nil
	}
	requeue := func(set map[int64]bool, infos []ChunkInfo) {
		b.mu.Lock()
		for _, in := range infos {
			if ch := c.chunks[in.Index]; ch != nil && ch.state == statePresent {
				set[in.Index] = true
			}
		}
		c.scheduleCommitLocked()
		b.mu.Unlock()
	}
	if len(marks) > 0 {
		if err := unix.Fdatasync(int(c.f.Fd())); err != nil {
			requeue(c.pending, marks)
			requeue(c.touched, touches)
			return fmt.Errorf("cache: %s: sync cache file %s: %w", c.Name(), c.cfg.Path, err)
		}
		if err := c.cfg.Index.MarkPresent(ctx, marks); err != nil {
			requeue(c.pending, marks)
			requeue(c.touched, touches)
			return fmt.Errorf("cache: %s: record chunks: %w", c.Name(), err)
		}
	}
	if len(touches) > 0 {
		if err := c.cfg.Index.Touch(ctx, touches); err != nil {
			requeue(c.touched, touches)
			return fmt.Errorf("cache: %s: record chunk uses: %w", c.Name(), err)
		}
	}
	return nil
}

// evictChunks removes chunks (state evicting) of c from the Index, then punches their ranges.
// b.writeMu held. On error nothing was punched.
func (c *Cache) evictChunks(ctx context.Context, chs []*chunk) error {
	idxs := make([]int64, len(chs))
	c.b.mu.Lock()
	for k, ch := range chs {
		idxs[k] = ch.idx
		delete(c.pending, ch.idx)
		delete(c.touched, ch.idx)
	}
	c.b.mu.Unlock()
	if c.cfg.Index != nil {
		if err := c.cfg.Index.Evict(ctx, idxs); err != nil {
			return fmt.Errorf("cache: %s: evict %d chunks: %w", c.Name(), len(idxs), err)
		}
	}
	for _, ch := range chs {
		if err := c.punch(ch.idx*c.cfg.ChunkSize, ch.n); err != nil {
			// The chunk is gone from the Index and memory; only the disk space is not returned.
			c.stats.localErrors.Add(1)
		}
	}
	return nil
}

func (c *Cache) punch(off, n int64) error {
	err := unix.Fallocate(int(c.f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
	if err != nil {
		return fmt.Errorf("cache: punch %d bytes at %d of %s: %w", n, off, c.cfg.Path, err)
	}
	return nil
}

// restore loads the presence map, makes the file agree with it and accounts the chunks in the
// Budget.
func (c *Cache) restore(ctx context.Context) error {
	st, err := c.f.Stat()
	if err != nil {
		return fmt.Errorf("cache: %s: %w", c.Name(), err)
	}
	var infos []ChunkInfo
	if ix := c.cfg.Index; ix != nil {
		if infos, err = ix.Load(ctx, Layout{ChunkSize: c.cfg.ChunkSize, SourceSize: c.size}); err != nil {
			return fmt.Errorf("cache: %s: load presence map: %w", c.Name(), err)
		}
		var bad []int64
		for _, in := range infos {
			if in.Index < 0 || in.Index >= c.nchunks || st.Size() != c.size {
				bad = append(bad, in.Index)
			}
		}
		if len(bad) > 0 {
			if err := ix.Evict(ctx, bad); err != nil {
				return fmt.Errorf("cache: %s: drop stale presence records: %w", c.Name(), err)
			}
			infos = slices.DeleteFunc(infos, func(in ChunkInfo) bool { return slices.Contains(bad, in.Index) })
		}
	}
	if len(infos) == 0 {
		if err := c.f.Truncate(0); err == nil {
			err = c.f.Truncate(c.size)
		}
		if err != nil {
			return fmt.Errorf("cache: %s: reset cache file: %w", c.Name(), err)
		}
		return nil
	}
	present := make(map[int64]bool, len(infos))
	for _, in := range infos {
		present[in.Index] = true
	}
	if err := c.punchUnrecorded(present); err != nil {
		return err
	}
	b := c.b
	b.writeMu.Lock()
	defer b.writeMu.Unlock()
	b.mu.Lock()
	for _, in := range infos {
		ch := &chunk{c: c, idx: in.Index, n: c.chunkLen(in.Index), state: statePresent, seq: in.Seq, prio: in.Priority}
		if in.Priority {
			c.prio[in.Index] = true
		}
		c.chunks[in.Index] = ch
		heap.Push(&b.lru, ch)
		b.used += ch.n
		c.cachedBytes += ch.n
		b.seq = max(b.seq, in.Seq)
	}
	var victims []*chunk
	if b.limit > 0 && b.used > b.limit {
		victims = b.reserveLocked(0)
	}
	b.mu.Unlock()
	if len(victims) > 0 {
		return b.evict(ctx, victims)
	}
	return nil
}

// punchUnrecorded punches every chunk that holds data in the file but is not recorded present:
// a crash between writing a chunk and recording it, or between dropping a record and punching.
func (c *Cache) punchUnrecorded(present map[int64]bool) error {
	fd := int(c.f.Fd())
	cs := c.cfg.ChunkSize
	for off := int64(0); off < c.size; {
		d, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("cache: %s: seek data in %s: %w", c.Name(), c.cfg.Path, err)
		}
		h, err := unix.Seek(fd, d, unix.SEEK_HOLE)
		if err != nil {
			return fmt.Errorf("cache: %s: seek hole in %s: %w", c.Name(), c.cfg.Path, err)
		}
		for i := d / cs; i*cs < h && i < c.nchunks; i++ {
			if !present[i] {
				if err := c.punch(i*cs, c.chunkLen(i)); err != nil {
					return err
				}
			}
		}
		off = max(h, off+1)
	}
	return nil
}

// noteAccess tracks sequential streams and starts read-ahead after the chunk last when the read
// [off, end) continues one.
func (c *Cache) noteAccess(off, end, last int64) {
	if c.cfg.ReadAhead < 0 {
		return
	}
	cs := c.cfg.ChunkSize
	c.raMu.Lock()
	// A read continues a stream when it starts near where the stream ended; it triggers
	// read-ahead only when it carries the stream into a later chunk, so that small reads
	// inside one chunk (a descriptor, a header, a grain directory) do not fetch chunks nobody
	// asked for.
	seq := false
	for k, s := range c.streams {
		if s >= 0 && off >= s-cs && off <= s+cs {
			seq = end > s && (end-1)/cs > (s-1)/cs
			c.streams[k] = max(s, end)
			break
		}
	}
	if !seq && !c.inStream(off, end) {
		c.streams[c.nextSt] = end
		c.nextSt = (c.nextSt + 1) % len(c.streams)
	}
	c.raMu.Unlock()
	if !seq {
		return
	}
	c.raMu.Lock()
	for i := last + 1; i <= last+int64(c.cfg.ReadAhead) && i < c.nchunks; i++ {
		if !slices.Contains(c.raQueue, i) {
			c.raQueue = append(c.raQueue, i)
		}
	}
	// Keep the queue short: a reader that moved on no longer needs what it skipped.
	if extra := len(c.raQueue) - 2*c.cfg.ReadAhead; extra > 0 {
		c.raQueue = slices.Delete(c.raQueue, 0, extra)
	}
	c.raMu.Unlock()
	c.ra.TryGo(c.readAheadWorker) // when at the limit, running workers drain the queue
}

// inStream reports whether [off, end) lies near the end of a known stream. Called with raMu held.
func (c *Cache) inStream(off, end int64) bool {
	cs := c.cfg.ChunkSize
	for _, s := range c.streams {
		if s >= 0 && off >= s-cs && off <= s+cs {
			return true
		}
	}
	return false
}

// readAheadWorker fetches queued read-ahead chunks until the queue is empty.
func (c *Cache) readAheadWorker() error {
	for {
		c.raMu.Lock()
		if len(c.raQueue) == 0 || c.ctx.Err() != nil {
			c.raMu.Unlock()
			return nil
		}
		i := c.raQueue[0]
		c.raQueue = c.raQueue[1:]
		c.raMu.Unlock()
		c.b.mu.Lock()
		absent := c.chunks[i] == nil && !c.closed
		c.b.mu.Unlock()
		if !absent {
			continue
		}
		if hit, err := c.readChunk(c.ctx, i, nil, 0); err == nil && !hit {
			c.stats.readAheads.Add(1)
		}
	}
}
