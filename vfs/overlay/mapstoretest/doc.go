// Package mapstoretest is the contract suite for overlay.MapStore: package store runs it against
// its bbolt OverlayMap and package overlay against its in-memory fake, so both mean the same
// thing by the interface's doc comments.
//
// Run checks, on a fresh store for each subtest:
//   - Load of an empty store: zero Layout, no blocks, generation 0; Clear of an empty store is
//     not an error.
//   - Commit records the layout (replacing the previous one, keeping blocks), applies updates
//     (Absent deletes, and deleting a block that is not there is a no-op), returns the
//     generation, which starts at 1 and grows by exactly one per Commit, including a Commit
//     with no updates; Load reports the same generation.
//   - Commits apply in order: later updates of a block win (checked against a model over a
//     random sequence of commits).
//   - Nothing aliases: the caller may change the updates map after Commit and the Blocks map
//     that Load returned without changing the store.
//   - Clear removes the map (blocks, layout, generation); the next Commit starts again at 1.
//   - Durability: what was committed (and cleared) is there after reopening the store.
//   - A cancelled context either fails the call with context.Canceled and no effect, or the
//     call does all of its work: never half of a Commit.
//   - A successful Commit never records what Load then refuses (an out-of-range state is
//     either refused by Commit or loaded back): a map that cannot be loaded would make the
//     overlay impossible to open.
//
// Commit is called from one goroutine at a time, as the interface allows; implementations
// that promise more (package store does) test their concurrency themselves.
package mapstoretest
