// Package indextest is the contract suite for cache.Index: package store runs it against its
// bbolt CacheIndex and package cache against its in-memory fake, so both mean the same thing by
// the interface's doc comments.
//
// Run checks, on a fresh index for each subtest (every subtest calls Load before anything
// else, as the Cache does):
//   - Load of a fresh index returns no chunks.
//   - MarkPresent records chunks, replacing Seq and Priority of chunks already recorded; Load
//     returns exactly the recorded chunks (in any order), with Seq values from 0 to MaxUint64
//     and chunk numbers up to the last chunk of a 1 TiB source.
//   - Touch changes Seq and Priority (setting and clearing it) of recorded chunks only and never
//     makes a chunk present; Evict removes records and ignores unknown chunks; calls with no
//     chunks change nothing.
//   - Load under a different layout (chunk size or source size) drops every record and returns
//     nothing; the old layout is then a different one too.
//   - Nothing aliases: the caller may change the slice it passed and the slice Load returned.
//   - Durability: the records (and a layout change) are there after reopening the index.
//   - A random sequence of calls, with reopens, agrees with a model.
//   - A cancelled context either fails the call with context.Canceled and no effect, or the
//     call does all of its work: never part of a call.
//
// The Cache calls an Index from one goroutine at a time, so the suite does too.
package indextest
