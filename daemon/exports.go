package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/h2kvm/h2kvm/nbdserve"
	"github.com/h2kvm/h2kvm/store"
	"github.com/h2kvm/h2kvm/vfs"
	"github.com/h2kvm/h2kvm/vfs/fusefs"
	"github.com/h2kvm/h2kvm/vfs/overlay"
	"github.com/h2kvm/h2kvm/vfs/source"
	"github.com/h2kvm/h2kvm/vfs/source/tarsrc"
)

// export is one served device stack.
type export struct {
	// set once by open
	spec    ExportSpec
	created time.Time
	chain   vfs.Disk
	overlay *overlay.Overlay // nil for read-only exports
	dev     vfs.Device       // what clients see: overlay or chain
	opener  source.Opener    // holds the source's connections and sessions
	// chainOpener opens the chain's files (through the caches for remote ones); top is the
	// location of the file the SOURCE names.
	chainOpener vfs.Opener
	top         string
	verify      verifyState
	files       []string // guarded by Daemon.mu: keys of the caches the export reads
	// versions are the versions of the files the export read, by location (guarded by
	// Daemon.mu): what its record ties a kept overlay to.
	versions map[string]string
	recorded *store.Chain // set once by open: the chain it was opened over, for its record
}

// isLocal reports whether a SOURCE names a local file, which is read in place, not cached.
func isLocal(location string) bool {
	if tarsrc.IsLocation(location) {
		archive, _, err := tarsrc.Split(location)
		return err == nil && isLocal(archive)
	}
	scheme, _, ok := strings.Cut(location, "://")
	return !ok || scheme == "file"
}

// ExportInfo describes an export for the control API.
type ExportInfo struct {
	ExportSpec
	Created     time.Time      `json:"created"`
	VirtualSize int64          `json:"virtual_size"`
	Chain       *vfs.ChainInfo `json:"chain,omitempty"`
	Stats       ExportStats    `json:"stats"`
	// Verification is the check of the source file against Manifest (or a digest asked for
	// with Verify); nil when neither.
	Verification *Verification `json:"verification,omitempty"`
}

// ExportStats are the counters of one export.
type ExportStats struct {
	// Remote source reads (zero for local files, which are not cached).
	FetchedBytes  int64 `json:"fetched_bytes"`
	FetchRequests int64 `json:"fetch_requests"`
	CacheHitBytes int64 `json:"cache_hit_bytes"`
	CacheHits     int64 `json:"cache_hits"`
	CachedBytes   int64 `json:"cached_bytes"`
	// Overlay (writable exports).
	OverlayBytes int64 `json:"overlay_bytes"`
	BytesWritten int64 `json:"bytes_written"`
	// NBD.
	NBDConnections int64  `json:"nbd_connections"`
	NBDRequests    uint64 `json:"nbd_requests"`
	NBDErrors      uint64 `json:"nbd_errors"`
	NBDBytesRead   uint64 `json:"nbd_bytes_read"`
}

// CreateExport opens spec's source and serves it. The export is recorded in the store and
// restored when the daemon restarts.
func (d *Daemon) CreateExport(ctx context.Context, spec ExportSpec) (ExportInfo, error) {
	if err := validName(spec.Name); err != nil {
		return ExportInfo{}, err
	}
	if spec.Source == "" {
		return ExportInfo{}, fmt.Errorf("export %q has no source: %w", spec.Name, ErrBadSpec)
	}
	if err := checkManifest(spec); err != nil {
		return ExportInfo{}, err
	}
	if isLocal(spec.Source) && !tarsrc.IsLocation(spec.Source) {
		// Recorded exports are restored by a daemon that may run elsewhere: keep no
		// relative path.
		abs, err := filepath.Abs(strings.TrimPrefix(spec.Source, "file://"))
		if err != nil {
			return ExportInfo{}, fmt.Errorf("export %q: source: %w", spec.Name, err)
		}
		spec.Source = abs
	}
	// Reserve the name while the stack is built: a second request for the same name must not
	// open the same overlay file and block map while the first one uses them.
	d.mu.Lock()
	_, dup := d.exports[spec.Name]
	dup = dup || d.creating[spec.Name]
	deleting := d.deleting[spec.Name]
	if !dup && !deleting {
		d.creating[spec.Name] = true
	}
	d.mu.Unlock()
	if dup {
		return ExportInfo{}, fmt.Errorf("export %q: %w", spec.Name, ErrExists)
	}
	if deleting { // its overlay is being closed or discarded
		return ExportInfo{}, fmt.Errorf("export %q is being deleted: %w", spec.Name, ErrBusy)
	}
	defer func() {
		d.mu.Lock()
		delete(d.creating, spec.Name)
		d.mu.Unlock()
	}()
	// A recorded export that could not be restored keeps its overlay. Only the same source may
	// take it over (a restore by hand); anything else would lay that overlay over other bytes,
	// or, being transient, discard it.
	if rec, err := d.store.Export(ctx, spec.Name); err == nil && (spec.Transient || rec.Source != spec.Source) {
		return ExportInfo{}, fmt.Errorf("export %q is recorded with source %s but not served (it could not be restored): "+
			"delete it first, which discards its overlay, or create it with the same source: %w", spec.Name, rec.Source, ErrExists)
	}
	created := time.Now().UTC()
	e, err := d.open(ctx, spec, created)
	if err != nil {
		return ExportInfo{}, err
	}
	if spec.Transient {
		return d.info(ctx, e, false), nil
	}
	rec := store.ExportRecord{Name: spec.Name, Source: spec.Source, ReadOnly: spec.ReadOnly,
		KeepOverlay: spec.KeepOverlay, IgnoreCIDMismatch: spec.IgnoreCIDMismatch, Created: created,
		Chain: e.recorded}
	if m := spec.Manifest; m != nil {
		rec.ManifestAlg, rec.ManifestHex = m.Alg, m.Hex
	}
	if err := d.store.PutExport(ctx, rec); err != nil {
		d.remove(context.WithoutCancel(ctx), e, true)
		return ExportInfo{}, err
	}
	return d.info(ctx, e, false), nil
}

// open builds the device stack of spec and adds it to the front ends.
func (d *Daemon) open(ctx context.Context, spec ExportSpec, created time.Time) (*export, error) {
	opener, name, err := source.Open(ctx, spec.Source, d.cfg.Source)
	if err != nil {
		return nil, sourceError(spec.Name, err)
	}
	e := &export{spec: spec, created: created, opener: opener}
	var chainOpener vfs.Opener = &versionOpener{Opener: opener, d: d, e: e}
	if !isLocal(spec.Source) {
		chainOpener = &cachingOpener{Opener: opener, d: d, e: e}
	}
	e.chainOpener, e.top = chainOpener, name
	if m := spec.Manifest; m != nil {
		e.verify.set(Verification{File: name, State: VerifyPending, Alg: strings.ToUpper(m.Alg), Expected: strings.ToLower(m.Hex)})
	}
	e.chain, err = vfs.OpenDisk(ctx, d.cfg.Formats, chainOpener, name, vfs.OpenOptions{IgnoreCIDMismatch: spec.IgnoreCIDMismatch})
	if err != nil {
		opener.Close()
		return nil, sourceError(spec.Name, err)
	}
	if e.recorded, err = d.checkChain(ctx, e); err != nil {
		e.chain.Close()
		opener.Close()
		return nil, err
	}
	e.dev = e.chain
	if !spec.ReadOnly {
		e.overlay, err = overlay.Open(ctx, e.chain, overlay.Config{
			Path:    d.overlayPath(spec.Name),
			Map:     d.store.OverlayMap(spec.Name),
			Discard: spec.Transient,
		})
		if err != nil {
			e.chain.Close()
			opener.Close()
			return nil, fmt.Errorf("export %q: overlay: %w", spec.Name, err)
		}
		e.dev = e.overlay
	}

	d.mu.Lock()
	if _, dup := d.exports[spec.Name]; dup || d.closed {
		d.mu.Unlock()
		e.close(ctx, d, false)
		if dup {
			return nil, fmt.Errorf("export %q: %w", spec.Name, ErrExists)
		}
		return nil, fmt.Errorf("export %q: daemon is shutting down", spec.Name)
	}
	d.exports[spec.Name] = e
	d.mu.Unlock()

	desc := source.Redact(spec.Source) // readable by anyone who lists the exports: no tokens
	if err := d.nbd.AddExport(spec.Name, e.dev, nbdserve.ExportOptions{ReadOnly: spec.ReadOnly, Description: desc}); err != nil {
		d.forget(spec.Name)
		e.close(ctx, d, false)
		return nil, fmt.Errorf("export %q: %w", spec.Name, err)
	}
	if d.fuse != nil {
		if err := d.fuse.Add(spec.Name, e.dev, spec.ReadOnly); err != nil {
			d.nbd.RemoveExport(spec.Name)
			d.forget(spec.Name)
			e.close(ctx, d, false)
			return nil, fmt.Errorf("export %q: FUSE: %w", spec.Name, err)
		}
	}
	return e, nil
}

func (d *Daemon) forget(name string) {
	d.mu.Lock()
	delete(d.exports, name)
	d.mu.Unlock()
}

func (d *Daemon) overlayPath(name string) string {
	return filepath.Join(d.cfg.StateDir, "overlays", name+".overlay")
}

// close flushes and closes the export's stack; with discard it also drops the overlay.
func (e *export) close(ctx context.Context, d *Daemon, discard bool) error {
	var errs []error
	if e.overlay != nil {
		errs = append(errs, e.overlay.Flush(ctx), e.overlay.Close())
		if discard {
			if err := os.Remove(d.overlayPath(e.spec.Name)); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
			errs = append(errs, d.store.OverlayMap(e.spec.Name).Clear(ctx))
		}
	}
	errs = append(errs, e.chain.Close(), e.opener.Close())
	return errors.Join(errs...)
}

// fuseRemoveWait bounds how long DeleteExport waits for open FUSE files of the export.
const fuseRemoveWait = 5 * time.Second

// DeleteExport stops serving name and forgets it. Its overlay is discarded unless the export
// was created with KeepOverlay; discard forces it. While files of the export stay open on the
// FUSE mount (for up to 5 s, or until ctx ends) the export is kept and the error wraps ErrBusy.
func (d *Daemon) DeleteExport(ctx context.Context, name string, discard bool) error {
	d.mu.Lock()
	e, ok := d.exports[name]
	if d.deleting[name] || d.creating[name] {
		d.mu.Unlock()
		return fmt.Errorf("export %q: being created or deleted: %w", name, ErrBusy)
	}
	d.deleting[name] = true
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		delete(d.deleting, name)
		d.mu.Unlock()
	}()
	if !ok {
		return d.deleteUnrestored(ctx, name, discard)
	}
	return d.remove(ctx, e, discard)
}

// remove withdraws a served export from the front ends, closes it and forgets its record.
// The caller holds the name (in creating or deleting).
func (d *Daemon) remove(ctx context.Context, e *export, discard bool) error {
	name := e.spec.Name
	if d.fuse != nil {
		// Files of the export may be open: wait a while for them to close. While they are
		// open the device must stay open, so a refused removal leaves the export as it was.
		fctx, cancel := context.WithTimeout(ctx, fuseRemoveWait)
		err := d.fuse.Remove(fctx, name)
		cancel()
		if errors.Is(err, fusefs.ErrBusy) {
			return fmt.Errorf("export %q: %w: %w", name, ErrBusy, err)
		}
		if err != nil && !errors.Is(err, vfs.ErrNotFound) {
			return fmt.Errorf("export %q: %w", name, err)
		}
	}
	d.forget(name)
	var errs []error
	errs = append(errs, d.nbd.RemoveExport(name))
	errs = append(errs, e.close(ctx, d, discard || !e.spec.KeepOverlay))
	if !e.spec.Transient {
		errs = append(errs, d.store.DeleteExport(ctx, name))
	}
	return errors.Join(errs...)
}

// deleteUnrestored forgets an export that is recorded but not served (its restore failed),
// discarding its overlay unless it was created with KeepOverlay.
func (d *Daemon) deleteUnrestored(ctx context.Context, name string, discard bool) error {
	rec, err := d.store.Export(ctx, name)
	if errors.Is(err, vfs.ErrNotFound) {
		return fmt.Errorf("export %q: %w", name, ErrNoExport)
	}
	if err != nil {
		return fmt.Errorf("export %q: %w", name, err)
	}
	var errs []error
	if discard || !rec.KeepOverlay {
		if err := os.Remove(d.overlayPath(name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
		errs = append(errs, d.store.OverlayMap(name).Clear(ctx))
	}
	errs = append(errs, d.store.DeleteExport(ctx, name))
	return errors.Join(errs...)
}

// GetExport describes one export, with its chain.
func (d *Daemon) GetExport(ctx context.Context, name string) (ExportInfo, error) {
	d.mu.Lock()
	e, ok := d.exports[name]
	d.mu.Unlock()
	if !ok {
		return ExportInfo{}, fmt.Errorf("export %q: %w", name, ErrNoExport)
	}
	return d.info(ctx, e, true), nil
}

// ListExports describes every export, sorted by name.
func (d *Daemon) ListExports() []ExportInfo {
	d.mu.Lock()
	exps := make([]*export, 0, len(d.exports))
	for _, e := range d.exports {
		exps = append(exps, e)
	}
	d.mu.Unlock()
	sort.Slice(exps, func(i, j int) bool { return exps[i].spec.Name < exps[j].spec.Name })
	out := make([]ExportInfo, 0, len(exps))
	for _, e := range exps {
		out = append(out, d.info(context.Background(), e, false))
	}
	return out
}

func (d *Daemon) info(ctx context.Context, e *export, withChain bool) ExportInfo {
	in := ExportInfo{ExportSpec: e.spec, Created: e.created, VirtualSize: e.dev.Size(), Stats: d.stats(e),
		Verification: e.verify.get()}
	if withChain {
		if ci, err := e.chain.Info(ctx); err == nil {
			in.Chain = &ci
		}
	}
	return in
}

func (d *Daemon) stats(e *export) ExportStats {
	var s ExportStats
	d.mu.Lock()
	for _, f := range e.files {
		if sc := d.caches[f]; sc != nil && sc.c != nil {
			cs := sc.c.Stats()
			s.FetchedBytes += cs.FetchedBytes
			s.FetchRequests += cs.FetchRequests
			s.CacheHitBytes += cs.HitBytes
			s.CacheHits += cs.HitRequests
			s.CachedBytes += cs.CachedBytes
		}
	}
	d.mu.Unlock()
	if e.overlay != nil {
		os := e.overlay.Stats()
		s.OverlayBytes, s.BytesWritten = os.OverlayBytes, os.BytesWritten
	}
	if ns, err := d.nbd.Stats(e.spec.Name); err == nil {
		s.NBDConnections, s.NBDRequests, s.NBDErrors, s.NBDBytesRead = ns.Connections, ns.Requests, ns.Errors, ns.BytesRead
	}
	return s
}

// pruneOverlays removes overlays that belong to no recorded export: those of transient exports
// left by a crash. The overlay of a recorded export is kept even when the export could not be
// restored (its source may be back at the next start).
func (d *Daemon) pruneOverlays(ctx context.Context, recorded map[string]bool) {
	files, _ := filepath.Glob(filepath.Join(d.cfg.StateDir, "overlays", "*.overlay"))
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".overlay")
		d.mu.Lock()
		_, used := d.exports[name]
		d.mu.Unlock()
		if used || recorded[name] {
			continue
		}
		d.log.Info("removing the overlay of a transient export", "export", name)
		if err := os.Remove(f); err != nil {
			d.log.Warn("removing overlay", "file", f, "err", err)
		}
		if err := d.store.OverlayMap(name).Clear(ctx); err != nil {
			d.log.Warn("clearing overlay map", "export", name, "err", err)
		}
	}
}
