package cache

import "context"

// Layout is what the presence records of a cache file are relative to. Records made under one
// layout mean nothing under another.
type Layout struct {
	ChunkSize  int64
	SourceSize int64
}

// ChunkInfo is the persisted state of one present chunk.
type ChunkInfo struct {
	Index    int64  // chunk number: the chunk covers [Index*ChunkSize, (Index+1)*ChunkSize)
	Seq      uint64 // last-use sequence number: larger is more recent
	Priority bool   // evicted only after every non-priority chunk
}

// Index persists which chunks of one cache file are present. Package store implements it.
//
// The Cache calls an Index from one goroutine at a time (per Budget), so implementations need no
// locking of their own beyond what their storage needs. Every method is one atomic update: after
// a crash either all of a call's records are there or none.
type Index interface {
	// Load returns the chunks recorded present. When no layout is recorded, or a different one,
	// the index MUST drop every record, record layout, and return no chunks.
	Load(ctx context.Context, layout Layout) ([]ChunkInfo, error)
	// MarkPresent records chunks as present (replacing their Seq and Priority).
	MarkPresent(ctx context.Context, chunks []ChunkInfo) error
	// Touch updates Seq and Priority of chunks that are recorded present; it MUST ignore chunks
	// that are not (it never makes a chunk present).
	Touch(ctx context.Context, chunks []ChunkInfo) error
	// Evict removes the records of chunks; unknown chunks are ignored.
	Evict(ctx context.Context, chunks []int64) error
}
