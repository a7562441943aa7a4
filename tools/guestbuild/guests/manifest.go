package guests

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// ManifestName is the manifest's file name inside a cache entry.
const ManifestName = "manifest.json"

// manifestFormat is the manifest's layout version (the "format" key).
const manifestFormat = 1

// Manifest describes one cache entry. File names in Files and Sizes are relative to the entry.
type Manifest struct {
	Format       int              `json:"format"`
	Name         string           `json:"name"`
	RecipeHash   string           `json:"recipe_hash"`
	Release      string           `json:"release"`
	Mirror       string           `json:"mirror"`
	Firmware     Firmware         `json:"firmware"`
	Packages     []string         `json:"packages"`
	BuiltAt      time.Time        `json:"built_at"`
	BuildSeconds float64          `json:"build_seconds"`
	VirtualSize  int64            `json:"virtual_size"`
	Files        Files            `json:"files"`
	Sizes        map[string]int64 `json:"sizes"`
	Facts        Facts            `json:"facts"`
}

// Files names the entry's files.
type Files struct {
	// Base is the monolithicSparse base link; Top the snapshot delta whose parent is Base.
	Base string `json:"base"`
	Top  string `json:"top"`
	// Chain is base first, top last.
	Chain         []string `json:"chain"`
	SSHPrivateKey string   `json:"ssh_private_key"`
	SSHPublicKey  string   `json:"ssh_public_key"`
	BuildLog      string   `json:"build_log"`
}

func writeManifest(path string, m Manifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("guestbuild: manifest %s: %w", path, err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("guestbuild: manifest: %w", err)
	}
	return nil
}

// ReadManifest reads and checks a manifest: known format, every named file present.
func ReadManifest(path string) (Manifest, error) {
	var m Manifest
	b, err := os.ReadFile(path)
	if err != nil {
		return m, fmt.Errorf("guestbuild: manifest: %w: %w", err, ErrBadManifest)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("guestbuild: manifest %s: %w: %w", path, err, ErrBadManifest)
	}
	if m.Format != manifestFormat {
		return m, fmt.Errorf("guestbuild: manifest %s: format %d, want %d: %w", path, m.Format, manifestFormat, ErrBadManifest)
	}
	if m.Files.Base == "" || m.Files.Top == "" || len(m.Files.Chain) == 0 {
		return m, fmt.Errorf("guestbuild: manifest %s: no chain: %w", path, ErrBadManifest)
	}
	dir := filepath.Dir(path)
	for _, f := range append(append([]string{}, m.Files.Chain...), m.Files.SSHPrivateKey) {
		if f == "" || filepath.IsAbs(f) || filepath.Base(f) != f {
			return m, fmt.Errorf("guestbuild: manifest %s: file name %q: %w", path, f, ErrBadManifest)
		}
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return m, fmt.Errorf("guestbuild: manifest %s: %w: %w", path, err, ErrBadManifest)
		}
	}
	return m, nil
}

// loadGuest opens the cache entry dir and checks that it was built from recipe hash.
func loadGuest(dir, hash string) (Guest, error) {
	m, err := ReadManifest(filepath.Join(dir, ManifestName))
	if err != nil {
		return Guest{}, err
	}
	if m.RecipeHash != hash {
		return Guest{}, fmt.Errorf("guestbuild: %s: recipe hash %.16s, want %.16s: %w", dir, m.RecipeHash, hash, ErrBadManifest)
	}
	g := Guest{
		Dir:      dir,
		Base:     filepath.Join(dir, m.Files.Base),
		Top:      filepath.Join(dir, m.Files.Top),
		SSHKey:   filepath.Join(dir, m.Files.SSHPrivateKey),
		Manifest: m,
	}
	for _, f := range m.Files.Chain {
		g.Chain = append(g.Chain, filepath.Join(dir, f))
	}
	return g, nil
}
