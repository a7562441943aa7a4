package fetch

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/h2kvm/h2kvm/vfs"
	"github.com/h2kvm/h2kvm/vfs/source/retry"
	"github.com/h2kvm/h2kvm/vfs/source/stats"
)

func TestOpenRetriesAndNames(t *testing.T) {
	st := new(stats.Counter)
	calls := 0
	err := Open(context.Background(), "test", "mem://f", fast, st, func(ctx context.Context) error {
		calls++
		if calls < 3 {
			return retry.Transient(errors.New("refused"))
		}
		return nil
	})
	if err != nil || calls != 3 || st.Snapshot().Retries != 2 {
		t.Fatalf("err %v after %d calls, stats %+v", err, calls, st.Snapshot())
	}
	err = Open(context.Background(), "test", "mem://f", fast, nil, func(ctx context.Context) error {
		return vfs.ErrNotFound
	})
	if !errors.Is(err, vfs.ErrNotFound) || !strings.HasPrefix(err.Error(), "test: open mem://f: ") {
		t.Fatalf("got %v", err)
	}
}

func TestOpenContextUnwrapped(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	err := Open(ctx, "test", "mem://f", fast, nil, func(ctx context.Context) error {
		cancel()
		return retry.Transient(errors.New("connection reset"))
	})
	if err != context.Canceled {
		t.Fatalf("got %v, want context.Canceled itself", err)
	}
}
