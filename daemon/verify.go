package daemon

import (
	"context"
	"encoding/hex"
	"fmt"
	"hash"
	"strings"
	"sync"
	"time"

	"github.com/h2kvm/h2kvm/store"
	"github.com/h2kvm/h2kvm/vfs/source/tarsrc"
)

// Digest is a digest of a whole source file, as an OVA/OVF manifest lists it.
type Digest struct {
	Alg string `json:"alg"` // SHA1, SHA256 or SHA512
	Hex string `json:"hex"`
}

// Verification states.
const (
	VerifyPending  = "unverified" // a digest is expected, not yet checked
	VerifyRunning  = "verifying"
	VerifyOK       = "verified"
	VerifyMismatch = "mismatch"
	VerifyFailed   = "failed" // the file could not be read completely
)

// Verification is the state of an export's check of its source file against the digest its
// spec expects (ExportSpec.Manifest).
type Verification struct {
	File     string `json:"file"`
	State    string `json:"state"`
	Alg      string `json:"alg"`
	Expected string `json:"expected,omitempty"`
	Actual   string `json:"actual,omitempty"`
	Error    string `json:"error,omitempty"`
	// Bytes is the size of the file read; FetchedBytes what reading it fetched that earlier
	// reads had not (0 when every chunk was cached already, and for local files).
	Bytes        int64     `json:"bytes,omitempty"`
	FetchedBytes int64     `json:"fetched_bytes"`
	Seconds      float64   `json:"seconds,omitempty"`
	Checked      time.Time `json:"checked,omitzero"`
}

// VerifyRequest is the body of POST /v1/exports/{name}/verify. With no expected digest in the
// export's spec, Alg names the hash to compute (the state is then "verified" when computed).
type VerifyRequest struct {
	Alg string `json:"alg,omitempty"`
}

// verifyState is an export's verification, guarded by its own mutex so that a long read
// never holds the daemon's.
type verifyState struct {
	mu  sync.Mutex
	v   *Verification
	run sync.Mutex // one verification at a time
}

func (s *verifyState) get() *Verification {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.v == nil {
		return nil
	}
	c := *s.v
	return &c
}

func (s *verifyState) set(v Verification) {
	s.mu.Lock()
	s.v = &v
	s.mu.Unlock()
}

// Verify reads the export's source file (the file its SOURCE names: a disk file, an OVA
// member) completely and in order, through the same cache as the export's reads, hashes it and
// compares the sum with the spec's Manifest digest. What reading it fetches is counted: after a
// whole conversion nearly every chunk is cached, and the check costs little more than a local
// read. A mismatch is not an error of the call: it is the returned state (VerifyMismatch).
func (d *Daemon) Verify(ctx context.Context, name string, req VerifyRequest) (Verification, error) {
	d.mu.Lock()
	e, ok := d.exports[name]
	d.mu.Unlock()
	if !ok {
		return Verification{}, fmt.Errorf("export %q: %w", name, ErrNoExport)
	}
	v := Verification{File: e.top, Alg: strings.ToUpper(req.Alg)}
	if m := e.spec.Manifest; m != nil {
		v.Alg, v.Expected = strings.ToUpper(m.Alg), strings.ToLower(m.Hex)
	}
	h := tarsrc.NewHash(v.Alg)
	if h == nil {
		return Verification{}, fmt.Errorf("export %q: verify: unknown digest algorithm %q (SHA1, SHA256, SHA512): %w", name, v.Alg, ErrBadSpec)
	}
	e.verify.run.Lock()
	defer e.verify.run.Unlock()
	v.State = VerifyRunning
	e.verify.set(v)
	start, before := time.Now(), d.stats(e).FetchedBytes
	sum, size, err := d.digest(ctx, e, h)
	v.FetchedBytes = d.stats(e).FetchedBytes - before
	v.Seconds = time.Since(start).Round(time.Millisecond).Seconds()
	v.Checked = time.Now().UTC()
	v.Bytes = size
	switch {
	case err != nil:
		v.State, v.Error = VerifyFailed, err.Error()
		if ctx.Err() != nil { // not the file's fault: back to where it was
			v.State, v.Error = VerifyPending, ""
		}
	case v.Expected == "" || sum == v.Expected:
		v.State, v.Actual = VerifyOK, sum
	default:
		v.State, v.Actual = VerifyMismatch, sum
	}
	e.verify.set(v)
	if err != nil {
		return v, fmt.Errorf("export %q: verify %s: %w", name, e.top, err)
	}
	return v, nil
}

// digest hashes the export's top file, read through the export's own opener (and so its
// caches).
func (d *Daemon) digest(ctx context.Context, e *export, h hash.Hash) (string, int64, error) {
	src, err := e.chainOpener.Open(ctx, e.top)
	if err != nil {
		return "", 0, err
	}
	defer src.Close()
	sum, err := tarsrc.Digest(ctx, src, h)
	if err != nil {
		return "", src.Size(), err
	}
	return hex.EncodeToString(sum), src.Size(), nil
}

// checkManifest refuses an expected digest that no file could match.
func checkManifest(spec ExportSpec) error {
	m := spec.Manifest
	if m == nil {
		return nil
	}
	h := tarsrc.NewHash(m.Alg)
	if h == nil {
		return fmt.Errorf("export %q: manifest digest algorithm %q is not SHA1, SHA256 or SHA512: %w", spec.Name, m.Alg, ErrBadSpec)
	}
	if b, err := hex.DecodeString(m.Hex); err != nil || len(b) != h.Size() {
		return fmt.Errorf("export %q: manifest digest %q is not %d hex bytes: %w", spec.Name, m.Hex, h.Size(), ErrBadSpec)
	}
	return nil
}

func recordedManifest(rec store.ExportRecord) *Digest {
	if rec.ManifestAlg == "" {
		return nil
	}
	return &Digest{Alg: rec.ManifestAlg, Hex: rec.ManifestHex}
}
