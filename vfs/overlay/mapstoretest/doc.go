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
//     random sequence of commits), within a Commit too.
//   - The map is runs: a run of any length (every block of a 1 TiB layout) is one run; runs
//     split, merge and are deleted per block; Load reports runs sorted, disjoint, coalesced and
//     none Absent; a Commit of thousands of runs over thousands of runs (which an implementation
//     may split into several transactions) applies whole and advances the generation once;
//     runs that name no block (End <= First, First < 0) are refused with nothing applied.
//   - Nothing aliases: the caller may change the updates slice after Commit and the Runs slice
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
// that promise more (package store does) test their concurrency themselves, and so does one
// that splits commits test what an interrupted Commit leaves (package store does: the suite
// cannot stop a Commit halfway).
package mapstoretest
