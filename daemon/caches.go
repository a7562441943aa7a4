package daemon

// Lock order: Daemon.mu is a leaf here; no cache or network call is made under it.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/h2kvm/h2kvm/vfs"
	"github.com/h2kvm/h2kvm/vfs/cache"
)

// Versioner is implemented by sources that know which version of their file they read (an
// HTTP ETag or Last-Modified time). The cache of a remote file and the record of an export are
// tied to it, so bytes of two versions of a file are never served mixed. Version returns "" when
// the source cannot tell; the size still tells versions apart.
type Versioner interface {
	Version() string
}

// sourceVersion is the version of the file src reads: its size and, when src (or a source it
// wraps) is a Versioner or a local file, its version or modification time.
func sourceVersion(src vfs.Source) string {
	v := fmt.Sprintf("size=%d", src.Size())
	for s := src; s != nil; {
		switch x := s.(type) {
		case Versioner:
			if ver := x.Version(); ver != "" {
				return v + " " + ver
			}
			return v
		case *vfs.File:
			if st, err := os.Stat(x.Name()); err == nil {
				return v + " mtime=" + st.ModTime().UTC().Format("2006-01-02T15:04:05.000000000Z")
			}
			return v
		}
		u, ok := s.(interface{ Unwrap() vfs.Source })
		if !ok {
			return v
		}
		s = u.Unwrap()
	}
	return v
}

// cacheKey is the identity of the cache of one version of a remote file: its location and
// version. It names the cache's records in the store and, hashed, its file.
func cacheKey(location, version string) string { return location + "\n" + version }

// sharedCache is the cache of one version of a remote file, shared by every export that reads
// it. It is in Daemon.caches from the moment one export starts creating it until it is closed,
// so that no two caches are ever open on one file.
type sharedCache struct {
	// set once
	key   string
	ready chan struct{} // closed when creation ended: c or err is set

	c       *cache.Cache  // guarded by Daemon.mu; nil until ready, and after a failure
	err     error         // guarded by Daemon.mu; the failure of cache.New
	refs    int           // guarded by Daemon.mu
	closing chan struct{} // guarded by Daemon.mu; set when the last reference went, closed once the cache is closed and forgotten
}

// versionOpener opens local files (read in place, not cached), noting their versions for the
// export's record.
type versionOpener struct {
	vfs.Opener
	d *Daemon
	e *export
}

func (o *versionOpener) Open(ctx context.Context, name string) (vfs.Source, error) {
	src, err := o.Opener.Open(ctx, name)
	if err != nil {
		return nil, err
	}
	o.d.noteVersion(o.e, name, sourceVersion(src), "")
	return src, nil
}

var _ vfs.Opener = (*cachingOpener)(nil)

// cachingOpener opens remote files through the daemon's shared caches.
type cachingOpener struct {
	vfs.Opener
	d *Daemon
	e *export
}

// Open opens name and returns its bytes through the one cache of the version it reads: the
// first export to open that version creates the cache (the others wait for it), later ones
// share it. Opening the file first (a size probe for HTTP) is what learns the version.
func (o *cachingOpener) Open(ctx context.Context, name string) (vfs.Source, error) {
	d := o.d
	src, err := o.Opener.Open(ctx, name)
	if err != nil {
		return nil, err
	}
	version := sourceVersion(src)
	key := cacheKey(name, version)
	for {
		d.mu.Lock()
		sc := d.caches[key]
		switch {
		case sc == nil: // this export creates it
			sc = &sharedCache{key: key, ready: make(chan struct{}), refs: 1}
			d.caches[key] = sc
			d.mu.Unlock()
			return o.create(ctx, sc, src, name, version)
		case sc.closing != nil: // its last export went: wait until it is closed, then create anew
			closing := sc.closing
			d.mu.Unlock()
			select {
			case <-closing:
			case <-ctx.Done():
				src.Close()
				return nil, ctx.Err()
			}
			continue
		}
		sc.refs++
		d.mu.Unlock()
		select {
		case <-sc.ready:
		case <-ctx.Done():
			d.release(sc)
			src.Close()
			return nil, ctx.Err()
		}
		d.mu.Lock()
		c, cerr := sc.c, sc.err
		d.mu.Unlock()
		if cerr != nil { // forgotten by its creator: nothing to release
			src.Close()
			return nil, cerr
		}
		// The cache reads through the source of the export that created it.
		src.Close()
		d.noteVersion(o.e, name, version, key)
		return &cachedSource{Cache: c, release: func() { d.release(sc) }}, nil
	}
}

// create creates the cache sc stands for, reading src, and wakes those waiting for it.
func (o *cachingOpener) create(ctx context.Context, sc *sharedCache, src vfs.Source, name, version string) (vfs.Source, error) {
	d := o.d
	c, err := cache.New(ctx, src, cache.Config{
		Path:      d.cachePath(sc.key),
		ChunkSize: d.cfg.ChunkSize,
		Index:     d.store.CacheIndex(sc.key),
		Budget:    d.budget,
	})
	d.mu.Lock()
	if err != nil {
		sc.err = err
		delete(d.caches, sc.key)
	}
	sc.c = c
	close(sc.ready)
	d.mu.Unlock()
	if err != nil {
		src.Close()
		return nil, err
	}
	d.noteVersion(o.e, name, version, sc.key)
	return &cachedSource{Cache: c, release: func() { d.release(sc) }}, nil
}

// noteVersion notes that the export read the file at location name in version, through the
// cache key ("" for a local file). e.files and e.versions are read by stats and CreateExport
// under d.mu, so they are written under d.mu too.
func (d *Daemon) noteVersion(e *export, name, version, key string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if key != "" && !slices.Contains(e.files, key) { // a file opened again (Verify) is counted once
		e.files = append(e.files, key)
	}
	if e.versions == nil {
		e.versions = map[string]string{}
	}
	e.versions[name] = version
}

// release drops one reference to sc, closing the cache with the last. While the daemon runs,
// a cache no export uses any more is deleted; at shutdown caches are kept for the exports
// restored at the next start. Until the cache is closed and deleted, an export opening the
// same file waits (a new cache on the file would be refused by its lock, or lose its chunks
// to the deletion).
func (d *Daemon) release(sc *sharedCache) {
	d.mu.Lock()
	sc.refs--
	if sc.refs > 0 || sc.c == nil {
		d.mu.Unlock()
		return
	}
	sc.closing = make(chan struct{})
	keep := d.closed
	d.mu.Unlock()
	if err := sc.c.Close(); err != nil {
		d.log.Warn("closing cache", "file", sc.c.Name(), "err", err)
	}
	if !keep {
		d.dropCache(context.Background(), sc.key)
	}
	d.mu.Lock()
	delete(d.caches, sc.key)
	close(sc.closing)
	d.mu.Unlock()
}

// cachePath is the local cache file of the remote file version with the cache key.
func (d *Daemon) cachePath(key string) string {
	sum := sha256.Sum256([]byte(key))
	return filepath.Join(d.cfg.StateDir, "cache", hex.EncodeToString(sum[:12])+".cache")
}

// pruneCaches deletes the cache files and indexes no export reads (among them the caches of
// versions of files that changed), so local disk use stays within the budget, which counts
// open caches only.
func (d *Daemon) pruneCaches(ctx context.Context) {
	ids, err := d.store.Caches(ctx)
	if err != nil {
		d.log.Warn("listing caches", "err", err)
		return
	}
	for _, id := range ids {
		d.mu.Lock()
		_, open := d.caches[id]
		d.mu.Unlock()
		if !open {
			d.dropCache(ctx, id)
		}
	}
}

func (d *Daemon) dropCache(ctx context.Context, key string) {
	if err := os.Remove(d.cachePath(key)); err != nil && !errors.Is(err, os.ErrNotExist) {
		d.log.Warn("removing cache file", "cache", key, "err", err)
	}
	if err := d.store.DeleteCache(ctx, key); err != nil {
		d.log.Warn("removing cache index", "cache", key, "err", err)
	}
}

// cachedSource is one export's handle on a shared cache: Close releases the reference.
type cachedSource struct {
	*cache.Cache
	once    sync.Once
	release func()
}

func (s *cachedSource) Close() error {
	s.once.Do(s.release)
	return nil
}
