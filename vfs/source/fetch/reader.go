package fetch

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/h2kvm/h2kvm/vfs"
	"github.com/h2kvm/h2kvm/vfs/source/retry"
	"github.com/h2kvm/h2kvm/vfs/source/stats"
)

// Func fetches the bytes at off into p in one attempt, len(p) ≥ 1 and off+len(p) within the
// file. It returns how many leading bytes of p it filled: len(p) and nil, or fewer with an
// error (mark transient ones with retry.Transient). Filling fewer without an error is taken
// as a transient short answer.
type Func func(ctx context.Context, p []byte, off int64) (int, error)

// Reader is the ReadAt of one remote file of Size bytes whose chunks Fetch fetches. Set its
// fields before the first ReadAt and do not change them after; ReadAt may then be called
// concurrently (as far as Fetch may).
type Reader struct {
	// Subsystem prefixes errors ("nbd", "ssh", "http").
	Subsystem string
	// Name is the file's name for errors (without credentials).
	Name string
	Size int64
	// Chunk is the most bytes one Fetch is asked for (0: no limit).
	Chunk int
	Retry retry.Policy
	// Stats, when set, counts the bytes fetched and the retries.
	Stats *stats.Counter
	Fetch Func
}

// ReadAt reads len(p) bytes at off (fewer, with io.EOF, at the end of the file). See the
// package documentation for the contract.
func (r *Reader) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	want, eof := vfs.ClipRead(r.Size, off, len(p))
	if want == 0 {
		if errors.Is(eof, vfs.ErrOutOfRange) {
			return 0, fmt.Errorf("%s: %s: %w", r.Subsystem, r.Name, eof)
		}
		return 0, eof
	}
	chunk := r.Chunk
	if chunk <= 0 {
		chunk = want
	}
	for done := 0; done < want; {
		start, end := done, min(want, done+chunk)
		err := retry.Do(ctx, r.Retry, r.Stats, func(ctx context.Context, attempt int) error {
			n, err := r.Fetch(ctx, p[done:end], off+int64(done))
			n = max(0, min(n, end-done))
			r.Stats.AddBytes(int64(n))
			done += n
			if err == nil && done < end {
				err = retry.Transient(fmt.Errorf("fetched %d of %d bytes at offset %d", n, end-done+n, off+int64(done-n)))
			}
			return err
		})
		if err != nil {
			if ctx.Err() != nil && err == ctx.Err() {
				return done, err
			}
			return done, fmt.Errorf("%s: %s: read %d bytes at offset %d: %w", r.Subsystem, r.Name, end-start, off+int64(start), err)
		}
	}
	return want, eof
}

// Defaults shared by the remote sources.
const (
	DefaultConns        = 4
	DefaultStallTimeout = 60 * time.Second
)

// Defaults fills the zero settings every remote source has: the number of connections (when
// conns is not nil), the stall timeout and the statistics counter (a private one).
func Defaults(conns *int, stall *time.Duration, st **stats.Counter) {
	if conns != nil && *conns <= 0 {
		*conns = DefaultConns
	}
	if *stall <= 0 {
		*stall = DefaultStallTimeout
	}
	if *st == nil {
		*st = new(stats.Counter)
	}
}
