package ovf

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"regexp"
	"strings"

	"github.com/h2kvm/h2kvm/vfs/source/tarsrc"
)

// MaxManifestSize bounds the size of a manifest ParseManifest accepts.
const MaxManifestSize = 1 << 20

// Digest is one manifest entry.
type Digest struct {
	Alg string // SHA1, SHA256 or SHA512
	Sum []byte
}

// Manifest maps file names to their digests.
type Manifest map[string]Digest

var mfLine = regexp.MustCompile(`^(SHA1|SHA256|SHA512)\s*\((.+)\)\s*=\s*([0-9a-fA-F]+)$`)

// ParseManifest reads a .mf file: lines "SHA256(name)= hex". Blank lines are skipped; any
// other line, a digest of the wrong length or a name listed twice is ErrInvalid.
func ParseManifest(r io.Reader, name string) (Manifest, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxManifestSize+1))
	if err != nil {
		return nil, fmt.Errorf("ovf: manifest %s: %w", name, err)
	}
	if len(data) > MaxManifestSize {
		return nil, fmt.Errorf("ovf: manifest %s larger than %d bytes: %w", name, MaxManifestSize, ErrInvalid)
	}
	m := make(Manifest)
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), MaxManifestSize)
	for line := 1; sc.Scan(); line++ {
		t := strings.TrimSpace(sc.Text())
		if t == "" {
			continue
		}
		g := mfLine.FindStringSubmatch(t)
		if g == nil {
			return nil, fmt.Errorf("ovf: manifest %s line %d: %q is not ALG(name)= hex: %w", name, line, trim(t), ErrInvalid)
		}
		sum, _ := hex.DecodeString(g[3])
		if len(sum) != NewHash(g[1]).Size() {
			return nil, fmt.Errorf("ovf: manifest %s line %d: %s digest of %d bytes: %w", name, line, g[1], len(sum), ErrInvalid)
		}
		file := strings.TrimSpace(g[2])
		if _, dup := m[file]; dup {
			return nil, fmt.Errorf("ovf: manifest %s line %d: %q listed twice: %w", name, line, file, ErrInvalid)
		}
		m[file] = Digest{Alg: g[1], Sum: sum}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("ovf: manifest %s: %v: %w", name, err, ErrInvalid)
	}
	return m, nil
}

func trim(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// NewHash returns the hash of a manifest algorithm name (nil for an unknown one).
func NewHash(alg string) hash.Hash { return tarsrc.NewHash(alg) }

// Verify compares sum, computed with the entry's algorithm, with the manifest's digest of
// file. It is ErrDigest on a mismatch.
func (m Manifest) Verify(file string, sum []byte) error {
	d, ok := m[file]
	if !ok {
		return fmt.Errorf("ovf: %s is not listed in the manifest", file)
	}
	if !bytes.Equal(d.Sum, sum) {
		return fmt.Errorf("ovf: %s: %s %x, manifest says %x: %w", file, d.Alg, sum, d.Sum, ErrDigest)
	}
	return nil
}
