package guests

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// DefaultCacheDir is where built guests live unless H2KVM_TEST_CACHE or a caller says otherwise.
const DefaultCacheDir = "/var/cache/h2kvm-test"

// CacheDir returns H2KVM_TEST_CACHE, or DefaultCacheDir when it is unset.
func CacheDir() string {
	if d := os.Getenv("H2KVM_TEST_CACHE"); d != "" {
		return d
	}
	return DefaultCacheDir
}

// Guest is a built guest in the cache. Paths are absolute.
type Guest struct {
	// Dir is the cache entry: CACHE/NAME-HASH16.
	Dir string
	// Base is NAME.vmdk (monolithicSparse); Top is NAME-000001.vmdk, a delta whose parent is Base.
	Base, Top string
	// Chain lists the links base first, top last.
	Chain []string
	// SSHKey is the private key whose public half is root's authorized key in the guest.
	SSHKey   string
	Manifest Manifest
}

// Builder builds guests into a cache folder. The zero value uses CacheDir(), the host's mirror
// and discards the build log's live copy.
type Builder struct {
	// CacheDir defaults to CacheDir().
	CacheDir string
	// Mirror defaults to HostMirror(release).
	Mirror string
	// Log, when set, receives the build log as it is written (it is always kept in the entry).
	Log io.Writer
}

// Build returns the cached guest called name, building it first when the cache has no entry for
// its current recipe hash. cacheDir "" means CacheDir(). Safe to call from many processes at
// once: builds of one guest are serialised by a lock file and happen at most once.
func Build(ctx context.Context, name, cacheDir string) (Guest, error) {
	return Builder{CacheDir: cacheDir}.Build(ctx, name)
}

// Cached returns the guest called name if the cache holds an entry for its current recipe, and
// ErrBadManifest (wrapped) otherwise. It never builds.
func Cached(name, cacheDir string) (Guest, error) {
	b := Builder{CacheDir: cacheDir}
	r, err := Lookup(name)
	if err != nil {
		return Guest{}, err
	}
	hash, err := r.Hash()
	if err != nil {
		return Guest{}, err
	}
	return loadGuest(b.entryDir(r, hash), hash)
}

// RequiredTools are the host programs a build runs.
var RequiredTools = []string{"bash", "debootstrap", "chroot", "guestfish", "qemu-img", "ssh-keygen",
	"lsinitramfs", "tar", "mount", "umount"}

// CheckTools returns ErrToolMissing (wrapped, naming the tools) when a build could not run here.
func CheckTools() error {
	var missing []string
	for _, t := range RequiredTools {
		if _, err := exec.LookPath(t); err != nil {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("guestbuild: %s: %w", strings.Join(missing, ", "), ErrToolMissing)
	}
	return nil
}

func (b Builder) cacheDir() string {
	if b.CacheDir != "" {
		return b.CacheDir
	}
	return CacheDir()
}

func (b Builder) entryDir(r Recipe, hash string) string {
	return filepath.Join(b.cacheDir(), r.Name+"-"+hash[:16])
}

// Build returns the cached guest called name, building it when needed; see the package Build.
func (b Builder) Build(ctx context.Context, name string) (Guest, error) {
	r, err := Lookup(name)
	if err != nil {
		return Guest{}, err
	}
	hash, err := r.Hash()
	if err != nil {
		return Guest{}, err
	}
	dir := b.entryDir(r, hash)
	if g, err := loadGuest(dir, hash); err == nil {
		return g, nil
	}
	if err := os.MkdirAll(b.cacheDir(), 0o755); err != nil {
		return Guest{}, fmt.Errorf("guestbuild: cache: %w", err)
	}
	unlock, err := lockFile(ctx, filepath.Join(b.cacheDir(), "."+name+".lock"))
	if err != nil {
		return Guest{}, err
	}
	defer unlock()
	// Another process may have built it while this one waited for the lock.
	if g, err := loadGuest(dir, hash); err == nil {
		return g, nil
	}
	if err := CheckTools(); err != nil {
		return Guest{}, err
	}
	if err := b.build(ctx, r, hash, dir); err != nil {
		return Guest{}, err
	}
	return loadGuest(dir, hash)
}

// lockFile takes an exclusive flock on path, polling so that ctx can cancel the wait.
func lockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("guestbuild: lock %s: %w", path, err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("guestbuild: lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("guestbuild: waiting for lock %s: %w", path, ctx.Err())
		case <-time.After(time.Second):
		}
	}
}

// build runs the recipe in CACHE/.build-NAME-*, then renames its output to dir.
func (b Builder) build(ctx context.Context, r Recipe, hash, dir string) (err error) {
	start := time.Now()
	tmp, err := os.MkdirTemp(b.cacheDir(), ".build-"+r.Name+"-")
	if err != nil {
		return fmt.Errorf("guestbuild: %s: %w", r.Name, err)
	}
	defer func() {
		unmountUnder(tmp)
		os.RemoveAll(tmp)
	}()
	work, out := filepath.Join(tmp, "work"), filepath.Join(tmp, "out")
	for _, d := range []string{work, out} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return fmt.Errorf("guestbuild: %s: %w", r.Name, err)
		}
	}
	mirror := b.Mirror
	if mirror == "" {
		mirror = HostMirror(r.Release)
	}
	logPath := filepath.Join(out, "build.log")
	if err := runScript(ctx, r, mirror, work, out, logPath, b.Log); err != nil {
		return err
	}
	kernels, err := kernelVersions(filepath.Join(work, "root", "boot"))
	if err != nil {
		return fmt.Errorf("guestbuild: %s: %w", r.Name, err)
	}
	m := Manifest{
		Format:     manifestFormat,
		Name:       r.Name,
		RecipeHash: hash,
		Release:    r.Release,
		Mirror:     mirror,
		Firmware:   r.Firmware,
		Packages:   r.Packages,
		BuiltAt:    time.Now().UTC().Truncate(time.Second),
		Files: Files{
			Base:          r.Name + ".vmdk",
			Top:           r.Name + "-000001.vmdk",
			Chain:         []string{r.Name + ".vmdk", r.Name + "-000001.vmdk"},
			SSHPrivateKey: "id_ed25519",
			SSHPublicKey:  "id_ed25519.pub",
			BuildLog:      "build.log",
		},
		Facts: r.Expect,
	}
	m.Facts.KernelVersions = kernels
	if m.VirtualSize, err = virtualSize(ctx, filepath.Join(out, m.Files.Top)); err != nil {
		return fmt.Errorf("guestbuild: %s: %w", r.Name, err)
	}
	m.Sizes = map[string]int64{}
	for _, f := range m.Files.Chain {
		st, err := os.Stat(filepath.Join(out, f))
		if err != nil {
			return fmt.Errorf("guestbuild: %s: output: %w", r.Name, err)
		}
		m.Sizes[f] = st.Size()
	}
	m.BuildSeconds = time.Since(start).Round(time.Second).Seconds()
	if err := writeManifest(filepath.Join(out, ManifestName), m); err != nil {
		return err
	}
	// Free the scratch space before the rename, then publish atomically. A stale entry (no or a
	// bad manifest) under the same name is replaced.
	unmountUnder(work)
	if err := os.RemoveAll(work); err != nil {
		return fmt.Errorf("guestbuild: %s: clean scratch: %w", r.Name, err)
	}
	if _, err := os.Stat(dir); err == nil {
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("guestbuild: %s: replace stale entry: %w", r.Name, err)
		}
	}
	if err := os.Rename(out, dir); err != nil {
		return fmt.Errorf("guestbuild: %s: publish: %w", r.Name, err)
	}
	return nil
}

// runScript runs common.sh then the recipe script with bash, in its own process group so that
// cancelling ctx stops debootstrap, chroot and guestfish children too.
func runScript(ctx context.Context, r Recipe, mirror, work, out, logPath string, live io.Writer) error {
	sdir := filepath.Join(work, "scripts")
	if err := os.Mkdir(sdir, 0o755); err != nil {
		return fmt.Errorf("guestbuild: %s: %w", r.Name, err)
	}
	var paths []string
	for _, name := range []string{commonScript, r.Script} {
		b, err := scripts.ReadFile(name)
		if err != nil {
			return fmt.Errorf("guestbuild: %s: %w", r.Name, err)
		}
		p := filepath.Join(sdir, filepath.Base(name))
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return fmt.Errorf("guestbuild: %s: %w", r.Name, err)
		}
		paths = append(paths, p)
	}
	logf, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("guestbuild: %s: %w", r.Name, err)
	}
	defer logf.Close()
	var w io.Writer = logf
	if live != nil {
		w = io.MultiWriter(logf, live)
	}
	cmd := exec.CommandContext(ctx, "bash", "-c", `source "$1" && source "$2"`, "guestbuild", paths[0], paths[1])
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	cmd.Env = append(os.Environ(),
		"GB_NAME="+r.Name, "GB_RELEASE="+r.Release, "GB_MIRROR="+mirror,
		"GB_PACKAGES="+strings.Join(r.Packages, ","), "GB_WORK="+work, "GB_OUT="+out,
		"GB_MAC="+r.MAC, "GB_HOSTNAME="+r.Hostname, fmt.Sprintf("GB_DISK_MIB=%d", r.DiskMiB),
		fmt.Sprintf("GB_SWAP_MIB=%d", r.SwapMiB), "GB_ROOT_PASSWORD="+r.RootPassword,
		"GB_MARKER="+r.Expect.Marker, "GB_MOTD="+r.Expect.MOTD, "DEBIAN_FRONTEND=noninteractive",
		"LC_ALL=C")
	if os.Getenv("LIBGUESTFS_BACKEND") == "" {
		cmd.Env = append(cmd.Env, "LIBGUESTFS_BACKEND=direct")
	}
	if os.Getenv("LIBGUESTFS_BACKEND_SETTINGS") == "" {
		cmd.Env = append(cmd.Env, "LIBGUESTFS_BACKEND_SETTINGS=force_tcg")
	}
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("guestbuild: %s: %w", r.Name, ctx.Err())
		}
		logf.Sync()
		return fmt.Errorf("guestbuild: %s: %v; log tail:\n%s: %w", r.Name, err, tailFile(logPath, 2000), ErrBuild)
	}
	return nil
}

// kernelVersions lists the versions of /boot/vmlinuz-* in a built root.
func kernelVersions(boot string) ([]string, error) {
	m, err := filepath.Glob(filepath.Join(boot, "vmlinuz-*"))
	if err != nil || len(m) == 0 {
		return nil, fmt.Errorf("no kernel in %s: %w", boot, ErrBuild)
	}
	var out []string
	for _, p := range m {
		out = append(out, strings.TrimPrefix(filepath.Base(p), "vmlinuz-"))
	}
	sort.Strings(out)
	return out, nil
}

// virtualSize asks qemu-img for the size of an image (following its backing chain's format).
func virtualSize(ctx context.Context, path string) (int64, error) {
	out, err := exec.CommandContext(ctx, "qemu-img", "info", "--output=json", path).Output()
	if err != nil {
		return 0, fmt.Errorf("qemu-img info %s: %w", path, err)
	}
	var info struct {
		VirtualSize int64 `json:"virtual-size"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		return 0, fmt.Errorf("qemu-img info %s: %w", path, err)
	}
	return info.VirtualSize, nil
}

// unmountUnder lazily unmounts everything mounted below dir (a build killed inside chroot may
// leave /proc mounted), deepest first, so that RemoveAll never walks a live filesystem.
func unmountUnder(dir string) {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return
	}
	var targets []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && strings.HasPrefix(f[1], dir+"/") {
			targets = append(targets, f[1])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(targets)))
	for _, t := range targets {
		syscall.Unmount(t, syscall.MNT_DETACH)
	}
}

// tailFile returns the last n bytes of a file, for error messages.
func tailFile(path string, n int64) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if int64(len(b)) > n {
		b = b[int64(len(b))-n:]
	}
	return string(bytes.TrimSpace(b))
}
