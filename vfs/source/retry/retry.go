// Package retry runs an operation again while it fails with a transient error, with exponential
// backoff, full jitter and a bounded budget (attempts and total time).
//
// Contract: an error is retried only when it wraps vfs.ErrTransient (mark one with Transient).
// Everything else is permanent and returned at once. A cancelled or expired context ends the loop
// with ctx.Err(), unwrapped. When the budget is spent the last error is returned, still wrapping
// vfs.ErrTransient, prefixed with the number of attempts made.
package retry

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/h2kvm/h2kvm/vfs"
	"github.com/h2kvm/h2kvm/vfs/source/stats"
)

// Defaults used for zero fields of a Policy.
const (
	DefaultAttempts   = 6
	DefaultMaxElapsed = 2 * time.Minute
	DefaultBaseDelay  = 200 * time.Millisecond
	DefaultMaxDelay   = 10 * time.Second
)

// Policy bounds the retries of one operation. Zero fields take the defaults above.
type Policy struct {
	// Attempts is the total number of attempts, the first included.
	Attempts int
	// MaxElapsed bounds the time from the first attempt to the start of the last.
	MaxElapsed time.Duration
	// BaseDelay is the wait before the second attempt; it doubles with each further one.
	BaseDelay time.Duration
	// MaxDelay caps one wait.
	MaxDelay time.Duration
}

// WithDefaults returns p with zero fields replaced by the defaults.
func (p Policy) WithDefaults() Policy {
	if p.Attempts <= 0 {
		p.Attempts = DefaultAttempts
	}
	if p.MaxElapsed <= 0 {
		p.MaxElapsed = DefaultMaxElapsed
	}
	if p.BaseDelay <= 0 {
		p.BaseDelay = DefaultBaseDelay
	}
	if p.MaxDelay <= 0 {
		p.MaxDelay = DefaultMaxDelay
	}
	return p
}

// Delay returns the wait before attempt number next (2 for the first retry), jittered to lie in
// [d/2, d] where d = min(MaxDelay, BaseDelay·2^(next-2)).
func (p Policy) Delay(next int) time.Duration {
	p = p.WithDefaults()
	d := p.BaseDelay
	for i := 2; i < next && d < p.MaxDelay; i++ {
		d *= 2
	}
	d = min(d, p.MaxDelay)
	half := d / 2
	return half + rand.N(d-half+1)
}

type transientError struct{ err error }

func (e transientError) Error() string   { return e.err.Error() }
func (e transientError) Unwrap() []error { return []error{e.err, vfs.ErrTransient} }

// Transient marks err as worth retrying: the result wraps both err and vfs.ErrTransient and
// prints as err. Transient(nil) is nil.
func Transient(err error) error {
	if err == nil || errors.Is(err, vfs.ErrTransient) {
		return err
	}
	return transientError{err}
}

// IsTransient reports whether err is worth retrying.
func IsTransient(err error) bool { return errors.Is(err, vfs.ErrTransient) }

// AfterHinter is an error that knows how long to wait before the next attempt (an HTTP
// Retry-After header). The hint is capped by the policy's MaxDelay.
type AfterHinter interface {
	RetryAfter() time.Duration
}

// Do calls op (attempt counts from 1) until it returns nil or a permanent error, the budget is
// spent, or ctx ends. Retries are counted in c (which may be nil).
func Do(ctx context.Context, p Policy, c *stats.Counter, op func(ctx context.Context, attempt int) error) error {
	p = p.WithDefaults()
	start := time.Now()
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		err := op(ctx, attempt)
		if err == nil {
			return nil
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return ctxErr
		}
		if !IsTransient(err) {
			return err
		}
		if attempt >= p.Attempts {
			return fmt.Errorf("gave up after %d attempts in %s: %w", attempt, time.Since(start).Round(time.Millisecond), err)
		}
		wait := p.Delay(attempt + 1)
		var h AfterHinter
		if errors.As(err, &h) && h.RetryAfter() > wait {
			wait = min(h.RetryAfter(), p.MaxDelay)
		}
		if time.Since(start)+wait > p.MaxElapsed {
			return fmt.Errorf("gave up after %d attempts in %s (time budget %s): %w", attempt, time.Since(start).Round(time.Millisecond), p.MaxElapsed, err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		c.AddRetry()
	}
}
