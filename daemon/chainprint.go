package daemon

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/h2kvm/h2kvm/store"
)

// chainOf returns what an opened export's bytes come from: its links with their CIDs (top
// first) and the version of every file it read. A writable export's overlay holds writes made
// over these bytes, so it is tied to them.
func (d *Daemon) chainOf(ctx context.Context, e *export) (*store.Chain, error) {
	ci, err := e.chain.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("export %q: chain: %w", e.spec.Name, err)
	}
	c := &store.Chain{}
	for _, l := range ci.Links {
		c.Links = append(c.Links, store.ChainLink{File: l.File, CID: l.CID})
	}
	d.mu.Lock()
	c.Versions = maps.Clone(e.versions)
	d.mu.Unlock()
	return c, nil
}

// chainChanges describes how the chain now differs from was, one phrase per difference.
func chainChanges(now, was *store.Chain) []string {
	var out []string
	if len(now.Links) != len(was.Links) {
		out = append(out, fmt.Sprintf("the chain has %d links, it had %d", len(now.Links), len(was.Links)))
	}
	for i := range min(len(now.Links), len(was.Links)) {
		n, o := now.Links[i], was.Links[i]
		switch {
		case n.File != o.File:
			out = append(out, fmt.Sprintf("link %d is %s, it was %s", i, n.File, o.File))
		case n.CID != o.CID:
			out = append(out, fmt.Sprintf("%s: CID %s, it was %s", n.File, n.CID, o.CID))
		}
	}
	for _, f := range slices.Sorted(maps.Keys(was.Versions)) {
		v, ok := now.Versions[f]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("%s is no longer read", f))
		case v != was.Versions[f]:
			out = append(out, fmt.Sprintf("%s: version %q, it was %q", f, v, was.Versions[f]))
		}
	}
	return out
}

// checkChain compares the chain e was opened over with its record, if any. A writable export
// whose chain changed is refused (its overlay, kept on disk, would be laid over other bytes);
// for a read-only one the change is logged. The record is brought up to date unless refused.
func (d *Daemon) checkChain(ctx context.Context, e *export) (*store.Chain, error) {
	now, err := d.chainOf(ctx, e)
	if err != nil {
		return nil, err
	}
	rec, err := d.store.Export(ctx, e.spec.Name)
	if err != nil { // not recorded yet: a new export
		return now, nil
	}
	var changed []string
	if rec.Chain != nil {
		changed = chainChanges(now, rec.Chain)
	}
	if len(changed) > 0 && !e.spec.ReadOnly {
		return nil, fmt.Errorf("export %q: %w: %s; its overlay %s holds writes made over the old chain and is kept: "+
			"put the old files back, or delete the export (which discards the overlay) and create it again",
			e.spec.Name, ErrChainChanged, strings.Join(changed, "; "), d.overlayPath(e.spec.Name))
	}
	if len(changed) > 0 {
		d.log.Warn("the chain of a read-only export changed since it was created; serving the new one",
			"export", e.spec.Name, "changes", strings.Join(changed, "; "))
	}
	if rec.Chain == nil || len(changed) > 0 {
		rec.Chain = now
		if err := d.store.PutExport(ctx, rec); err != nil {
			return nil, err
		}
	}
	return now, nil
}
