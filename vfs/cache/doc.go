// Package cache turns a slow remote vfs.Source into a vfs.Source that keeps what it has fetched
// in a sparse local file.
//
// # Contract
//
//   - Reads fetch whole aligned chunks (Config.ChunkSize, default 1 MiB; the last chunk of a
//     source may be short). Bytes that were fetched once are served from the local file until
//     they are evicted: nothing is fetched twice that can be cached, nothing is fetched that is
//     not read (except read-ahead, below).
//   - Concurrent misses on one chunk share one fetch. A failed fetch is not cached: every reader
//     that shared it gets the error, the next read fetches again. Errors from the source are
//     returned wrapped ("cache: NAME: chunk N at OFF: ..."), context errors unwrapped.
//   - Sequential reads (a read that starts within one chunk of where an earlier read of the same
//     source ended; up to 8 streams are tracked) start a background read-ahead of the next
//     Config.ReadAhead chunks, at most Config.ReadAheadConcurrency at a time per source.
//   - A Budget, shared by every Cache of a daemon, bounds the bytes of all their local files:
//     before a chunk is written, the least recently used chunks are evicted (their range of the
//     cache file is punched out with fallocate(PUNCH_HOLE|KEEP_SIZE)) so that the allocated
//     blocks of all cache files stay within the limit. Priority chunks (the head of a file, and
//     ranges named by Prioritize: descriptors, headers, grain directories) are evicted only when
//     no other chunk is left. A chunk being read at the moment is never evicted.
//   - Which chunks are present is persisted through the Index interface (package store
//     implements it over bbolt; vfs imports no bbolt). Crash ordering: chunk data is written and
//     fdatasync'ed before the Index records it present (in batches), and a chunk is removed from
//     the Index before its range is punched. After a restart, New with the same file and Index
//     restores the cache; file ranges the Index does not vouch for are punched out.
//   - A Cache holds an exclusive flock on its file while open: a second Cache on the same file
//     (a second export, a second daemon on the same state directory) would reset or punch the
//     chunks the first one serves; New refuses it with ErrLocked instead. Callers share one
//     Cache per file.
//   - Fetched chunks are written with O_DIRECT where the file system allows it (aligned chunks;
//     otherwise, and after any EINVAL, buffered): no copy into the page cache, which was half
//     the daemon's CPU during a cold remote read. The last ReadAhead+Concurrency chunks fetched
//     stay in memory (recycled buffers) for the readers that follow a sequential stream; older
//     chunks are read back from the file.
//
// # Caveats
//
// The Budget counts the chunks of open caches only; a cache file left behind by a cache that is
// not reopened still uses disk (delete it and its Index records with the export). The LRU order
// is persisted lazily (with the next batch of presence records), so a crash may forget recent
// uses; it never forgets presence that was recorded.
package cache
