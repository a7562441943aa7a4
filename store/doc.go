// Package store is h2kvm's persistent state: one bbolt database in the daemon's state
// directory, behind domain methods. Nothing outside this package sees a bucket.
//
// # Schema (version 1)
//
// Integers are big-endian unsigned 64-bit (u64) unless said otherwise, so keys sort
// numerically. Names and ids are opaque UTF-8 bytes.
//
//	/ (root)
//	├── meta                                  bucket
//	│   └── schema          → u64             schema version (1)
//	├── caches                                bucket: lazy chunk caches (vfs/cache.Index)
//	│   └── <cache id>                        bucket: one per cached source; the id is the
//	│       │                                 source's identity (location + version), opaque
//	│       ├── layout      → u64 chunk size | u64 source size     (16 bytes)
//	│       └── chunks                        bucket: the chunks present in the cache file
//	│           └── <u64 chunk index> → u64 last-use sequence | u8 flags (bit 0: priority)
//	├── overlays                              bucket: copy-on-write overlays (vfs/overlay.MapStore)
//	│   └── <export name>                     bucket: one per export with an overlay
//	│       ├── layout      → u64 block size | u64 device size     (16 bytes)
//	│       ├── generation  → u64             completed commits of the block map so far
//	│       └── runs                          bucket: runs of blocks not Absent, disjoint,
//	│           │                             coalesced but for an interrupted Commit's seams
//	│           └── <u64 first block> → u64 end block (exclusive) | u8 state (1 data, 2 zeroed,
//	│                                         3 trimmed)                    (9 bytes)
//	│       (an older h2kvm kept a blocks bucket instead, <u64 block index> → u8 state: Load
//	│       reads it and the first Commit converts it into runs)
//	├── exports                               bucket
//	│   └── <export name>   → JSON ExportRecord
//	└── jobs                                  bucket: pipeline job records
//	    └── <job id>        → JSON (opaque to store)
//
// # Contract
//
// Every method is one bbolt transaction, so each call is atomic and durable when it returns
// (bbolt fsyncs each commit), except an overlay map's Commit, which is split into
// transactions of at most DefaultOverlayTxRecords records (atomic per block, the generation
// written by the last: see OverlayMap and vfs/overlay.MapStore). Values are copied or decoded before the transaction ends; nothing
// returned aliases the database's memory map. All methods may be called concurrently.
// Concurrent overlay commits and job writes are coalesced into shared transactions (DB.Batch).
//
// Open takes an exclusive lock on the file: a second daemon on the same state directory gets
// ErrLocked after Options.LockTimeout instead of waiting forever.
package store
