package guests

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLookup(t *testing.T) {
	if _, err := Lookup("windows-xp"); !errors.Is(err, ErrUnknownGuest) {
		t.Fatalf("Lookup unknown = %v", err)
	}
	for _, n := range Names() {
		r, err := Lookup(n)
		if err != nil {
			t.Fatal(err)
		}
		if r.Name != n || r.Release == "" || len(r.Packages) == 0 || r.DiskMiB <= r.SwapMiB+512 {
			t.Fatalf("recipe %s incomplete: %+v", n, r)
		}
		if !strings.HasPrefix(r.MAC, "00:50:56:") || r.Expect.MAC != r.MAC {
			t.Fatalf("recipe %s: MAC %q / %q is not a VMware one", n, r.MAC, r.Expect.MAC)
		}
		if _, err := scripts.ReadFile(r.Script); err != nil {
			t.Fatalf("recipe %s: %v", n, err)
		}
		for _, m := range r.Expect.InitramfsModules {
			if strings.Contains(m, "virtio") {
				t.Fatalf("recipe %s plants virtio module %s: it would boot naively", n, m)
			}
		}
	}
}

// TestHash: stable, independent of package order, changed by anything that changes the guest.
func TestHash(t *testing.T) {
	r, err := Lookup("debian-bios")
	if err != nil {
		t.Fatal(err)
	}
	h1, _ := r.Hash()
	h2, _ := r.Hash()
	if h1 != h2 || len(h1) != 64 {
		t.Fatalf("hash not stable: %s %s", h1, h2)
	}
	shuffled := r
	shuffled.Packages = append([]string(nil), r.Packages...)
	shuffled.Packages[0], shuffled.Packages[1] = shuffled.Packages[1], shuffled.Packages[0]
	if h, _ := shuffled.Hash(); h != h1 {
		t.Fatal("package order changed the hash")
	}
	changes := map[string]func(*Recipe){
		"packages": func(r *Recipe) { r.Packages = append(r.Packages, "vim") },
		"release":  func(r *Recipe) { r.Release = "trixie" },
		"disk":     func(r *Recipe) { r.DiskMiB++ },
		"facts":    func(r *Recipe) { r.Expect.Marker += "x" },
		"script":   func(r *Recipe) { r.Script = commonScript },
	}
	for name, change := range changes {
		c := r
		c.Packages = append([]string(nil), r.Packages...)
		change(&c)
		if h, _ := c.Hash(); h == h1 {
			t.Errorf("changing %s kept the hash", name)
		}
	}
	// Lookup must hand out copies: a caller's change must not reach the table.
	r.Packages[0] = "changed"
	if again, _ := Lookup("debian-bios"); again.Packages[0] == "changed" {
		t.Fatal("Lookup shares the package slice")
	}
}

func TestMirrorFromList(t *testing.T) {
	in := `# comment
deb http://security.debian.org/debian-security bookworm-security main
deb-src http://src.example/debian bookworm main
deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian/ bookworm main contrib # x
`
	if got := mirrorFromList(strings.NewReader(in), "bookworm"); got != "http://mirror.example/debian" {
		t.Fatalf("got %q", got)
	}
	if got := mirrorFromList(strings.NewReader(in), "trixie"); got != "" {
		t.Fatalf("trixie: got %q", got)
	}
}

func TestMirrorFromDeb822(t *testing.T) {
	in := `Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main

Types: deb-src
URIs: http://src.example/debian
Suites: bookworm
Components: main

Types: deb
# a comment
URIs: http://snapshot.example/debian/
Suites: bookworm bookworm-updates
Components: main
Enabled: no

Types: deb
URIs: http://deb.example/debian/
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg`
	if got := mirrorFromDeb822(strings.NewReader(in), "bookworm"); got != "http://deb.example/debian" {
		t.Fatalf("got %q", got)
	}
}

func TestHostMirrorEnv(t *testing.T) {
	t.Setenv("H2KVM_DEBIAN_MIRROR", "http://env.example/debian")
	if got := HostMirror("bookworm"); got != "http://env.example/debian" {
		t.Fatalf("got %q", got)
	}
}

func TestCacheDirEnv(t *testing.T) {
	t.Setenv("H2KVM_TEST_CACHE", "/tmp/x")
	if CacheDir() != "/tmp/x" {
		t.Fatal(CacheDir())
	}
	t.Setenv("H2KVM_TEST_CACHE", "")
	if CacheDir() != DefaultCacheDir {
		t.Fatal(CacheDir())
	}
}

// fakeEntry writes a cache entry by hand, as a finished build would leave it.
func fakeEntry(t *testing.T, dir, hash string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	m := Manifest{Format: manifestFormat, Name: "debian-bios", RecipeHash: hash, Files: Files{
		Base: "debian-bios.vmdk", Top: "debian-bios-000001.vmdk",
		Chain:         []string{"debian-bios.vmdk", "debian-bios-000001.vmdk"},
		SSHPrivateKey: "id_ed25519",
	}}
	for _, f := range append(m.Files.Chain, m.Files.SSHPrivateKey) {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := writeManifest(filepath.Join(dir, ManifestName), m); err != nil {
		t.Fatal(err)
	}
}

// TestCachedEntry: a complete entry for the current hash is returned without building; a
// stale hash, a missing file or a bad manifest make it absent.
func TestCachedEntry(t *testing.T) {
	cache := t.TempDir()
	r, _ := Lookup("debian-bios")
	hash, _ := r.Hash()
	dir := Builder{CacheDir: cache}.entryDir(r, hash)
	fakeEntry(t, dir, hash)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	g, err := Build(ctx, "debian-bios", cache)
	if err != nil {
		t.Fatalf("Build on a cached entry: %v", err)
	}
	if g.Top != filepath.Join(dir, "debian-bios-000001.vmdk") || len(g.Chain) != 2 || g.Chain[1] != g.Top {
		t.Fatalf("guest %+v", g)
	}
	os.Remove(g.Top)
	if _, err := Cached("debian-bios", cache); !errors.Is(err, ErrBadManifest) {
		t.Fatalf("missing top: %v", err)
	}
	fakeEntry(t, dir, strings.Repeat("0", 64))
	if _, err := Cached("debian-bios", cache); !errors.Is(err, ErrBadManifest) {
		t.Fatalf("stale hash: %v", err)
	}
	os.WriteFile(filepath.Join(dir, ManifestName), []byte("{"), 0o644)
	if _, err := Cached("debian-bios", cache); !errors.Is(err, ErrBadManifest) {
		t.Fatalf("bad json: %v", err)
	}
}

// TestLockWaitsAndCancels: a second locker waits while the first holds the lock, and gives up
// when its context ends.
func TestLockWaitsAndCancels(t *testing.T) {
	path := filepath.Join(t.TempDir(), ".x.lock")
	unlock, err := lockFile(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	if _, err := lockFile(ctx, path); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second lock = %v, want DeadlineExceeded", err)
	}
	unlock()
	unlock2, err := lockFile(context.Background(), path)
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	unlock2()
}

func TestReadManifestRejectsPaths(t *testing.T) {
	dir := t.TempDir()
	m := Manifest{Format: manifestFormat, Files: Files{Base: "b", Top: "t", Chain: []string{"../../etc/passwd"}, SSHPrivateKey: "k"}}
	if err := writeManifest(filepath.Join(dir, ManifestName), m); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadManifest(filepath.Join(dir, ManifestName)); !errors.Is(err, ErrBadManifest) {
		t.Fatalf("got %v", err)
	}
}
