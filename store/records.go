package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/h2kvm/h2kvm/vfs"
)

// ExportRecord is what the daemon needs to restore an export after a restart.
type ExportRecord struct {
	Name string `json:"name"`
	// Source is the SOURCE the export was created from, without credentials.
	Source   string `json:"source"`
	ReadOnly bool   `json:"read_only"`
	// IgnoreCIDMismatch: the chain was opened although a parentCID did not match.
	IgnoreCIDMismatch bool `json:"ignore_cid_mismatch,omitempty"`
	// KeepOverlay: the overlay survives restarts and export deletion is explicit; otherwise it
	// is discarded when the export closes.
	KeepOverlay bool      `json:"keep_overlay"`
	Created     time.Time `json:"created"`
	// ManifestAlg and ManifestHex are the digest the source file should have, if known.
	ManifestAlg string `json:"manifest_alg,omitempty"`
	ManifestHex string `json:"manifest_hex,omitempty"`
	// Chain is what the export's bytes came from when it was opened (nil in records written
	// before it was kept): the chain its overlay's writes were made over.
	Chain *Chain `json:"chain,omitempty"`
}

// Chain is the chain of an export: its links, top first, and the version of every file it
// read (links and extents), by location. Versions are opaque ("size=N etag=..." and the like).
type Chain struct {
	Links    []ChainLink       `json:"links"`
	Versions map[string]string `json:"versions,omitempty"`
}

// ChainLink is one link of a recorded chain.
type ChainLink struct {
	File string `json:"file"`
	CID  string `json:"cid,omitempty"` // VMDK's content ID; empty for formats without one
}

// PutExport creates or replaces an export record.
func (s *Store) PutExport(ctx context.Context, rec ExportRecord) error {
	if rec.Name == "" {
		return fmt.Errorf("store: export record without a name")
	}
	v, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("store: export %q: %w", rec.Name, err)
	}
	return s.putBlob(ctx, bktExports, "export", rec.Name, v)
}

// Export returns the record of export name, or an error wrapping vfs.ErrNotFound.
func (s *Store) Export(ctx context.Context, name string) (ExportRecord, error) {
	var rec ExportRecord
	err := s.getBlob(ctx, bktExports, "export", name, &rec)
	return rec, err
}

// Exports returns every export record, ordered by name.
func (s *Store) Exports(ctx context.Context) ([]ExportRecord, error) {
	var out []ExportRecord
	err := s.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bktExports).ForEach(func(k, v []byte) error {
			var rec ExportRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("export %q: %w", k, err)
			}
			out = append(out, rec)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return out, nil
}

// DeleteExport removes an export record (not its overlay map: see OverlayMap.Clear). Deleting
// an unknown export is not an error.
func (s *Store) DeleteExport(ctx context.Context, name string) error {
	return s.deleteKey(ctx, bktExports, "export", name)
}

// PutJob stores v, encoded as JSON, as the record of job id. Concurrent calls share
// transactions.
func (s *Store) PutJob(ctx context.Context, id string, v any) error {
	if id == "" {
		return fmt.Errorf("store: job record without an id")
	}
	blob, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("store: job %q: %w", id, err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	err = s.db.Batch(func(tx *bolt.Tx) error { return tx.Bucket(bktJobs).Put([]byte(id), blob) })
	if err != nil {
		return fmt.Errorf("store: job %q: %w", id, err)
	}
	return nil
}

// Job decodes the record of job id into v, or returns an error wrapping vfs.ErrNotFound.
func (s *Store) Job(ctx context.Context, id string, v any) error {
	return s.getBlob(ctx, bktJobs, "job", id, v)
}

// Jobs returns the ids of every job record, in byte order.
func (s *Store) Jobs(ctx context.Context) ([]string, error) {
	var ids []string
	err := s.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bktJobs).ForEach(func(k, _ []byte) error {
			ids = append(ids, string(k))
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return ids, nil
}

// DeleteJob removes a job record. Deleting an unknown job is not an error.
func (s *Store) DeleteJob(ctx context.Context, id string) error {
	return s.deleteKey(ctx, bktJobs, "job", id)
}

func (s *Store) putBlob(ctx context.Context, bkt []byte, what, key string, v []byte) error {
	err := s.update(ctx, func(tx *bolt.Tx) error { return tx.Bucket(bkt).Put([]byte(key), v) })
	if err != nil {
		return fmt.Errorf("store: %s %q: %w", what, key, err)
	}
	return nil
}

func (s *Store) getBlob(ctx context.Context, bkt []byte, what, key string, v any) error {
	err := s.view(ctx, func(tx *bolt.Tx) error {
		blob := tx.Bucket(bkt).Get([]byte(key))
		if blob == nil {
			return vfs.ErrNotFound
		}
		return json.Unmarshal(blob, v) // decodes (copies) inside the transaction
	})
	if err != nil {
		return fmt.Errorf("store: %s %q: %w", what, key, err)
	}
	return nil
}

func (s *Store) deleteKey(ctx context.Context, bkt []byte, what, key string) error {
	err := s.update(ctx, func(tx *bolt.Tx) error { return tx.Bucket(bkt).Delete([]byte(key)) })
	if err != nil {
		return fmt.Errorf("store: delete %s %q: %w", what, key, err)
	}
	return nil
}
