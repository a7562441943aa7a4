package retry

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/h2kvm/h2kvm/vfs"
	"github.com/h2kvm/h2kvm/vfs/source/stats"
)

var fast = Policy{Attempts: 4, BaseDelay: time.Millisecond, MaxDelay: 2 * time.Millisecond, MaxElapsed: time.Second}

func TestDoRetriesTransientThenSucceeds(t *testing.T) {
	var c stats.Counter
	calls := 0
	err := Do(context.Background(), fast, &c, func(ctx context.Context, attempt int) error {
		calls++
		if attempt < 3 {
			return Transient(errors.New("reset"))
		}
		return nil
	})
	if err != nil || calls != 3 || c.Snapshot().Retries != 2 {
		t.Fatalf("err=%v calls=%d retries=%d", err, calls, c.Snapshot().Retries)
	}
}

func TestDoStopsOnPermanent(t *testing.T) {
	perm := errors.New("denied")
	calls := 0
	err := Do(context.Background(), fast, nil, func(ctx context.Context, attempt int) error {
		calls++
		return perm
	})
	if !errors.Is(err, perm) || calls != 1 {
		t.Fatalf("err=%v calls=%d", err, calls)
	}
}

func TestDoBudgetSpent(t *testing.T) {
	calls := 0
	err := Do(context.Background(), fast, nil, func(ctx context.Context, attempt int) error {
		calls++
		return Transient(errors.New("503"))
	})
	if !errors.Is(err, vfs.ErrTransient) || calls != 4 {
		t.Fatalf("err=%v calls=%d", err, calls)
	}
}

func TestDoCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	err := Do(ctx, Policy{Attempts: 100, BaseDelay: time.Hour, MaxDelay: time.Hour, MaxElapsed: 10 * time.Hour}, nil, func(ctx context.Context, attempt int) error {
		cancel()
		return Transient(errors.New("x"))
	})
	if err != context.Canceled {
		t.Fatalf("want context.Canceled unwrapped, got %v", err)
	}
}

func TestDelayBounds(t *testing.T) {
	p := Policy{BaseDelay: 100 * time.Millisecond, MaxDelay: time.Second}
	for next := 2; next < 10; next++ {
		d := p.Delay(next)
		hi := min(100*time.Millisecond<<(next-2), time.Second)
		if d < hi/2 || d > hi {
			t.Fatalf("Delay(%d)=%s outside [%s,%s]", next, d, hi/2, hi)
		}
	}
}
