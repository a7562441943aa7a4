package fetch

import (
	"context"
	"fmt"

	"github.com/h2kvm/h2kvm/vfs/source/retry"
	"github.com/h2kvm/h2kvm/vfs/source/stats"
)

// Open runs op, one attempt at opening the file called name (connect, learn its size),
// through retry.Do with policy p, counting retries in c. A context that ended returns
// ctx.Err() unwrapped; any other error is prefixed "SUBSYSTEM: open NAME: " and keeps its
// sentinels.
func Open(ctx context.Context, subsystem, name string, p retry.Policy, c *stats.Counter, op func(ctx context.Context) error) error {
	err := retry.Do(ctx, p, c, func(ctx context.Context, attempt int) error { return op(ctx) })
	if err == nil || ctx.Err() != nil && err == ctx.Err() {
		return err
	}
	return fmt.Errorf("%s: open %s: %w", subsystem, name, err)
}
