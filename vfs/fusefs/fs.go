package fusefs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/h2kvm/h2kvm/vfs"
)

// DiskFile is the name of the one file in each export's directory.
const DiskFile = "disk.raw"

// MaxNameLen is the longest export name accepted (NAME_MAX).
const MaxNameLen = 255

// DefaultMaxIO is the default size of one FUSE read or write request and of kernel readahead.
const DefaultMaxIO = 1 << 20

// Options configure a mount. The zero value is a private, writable mount.
type Options struct {
	// ReadOnly mounts the file system read-only ("ro"): every export is read-only whatever Add
	// is told, and the kernel refuses writes before they reach this package.
	ReadOnly bool
	// AllowOther lets users other than the one who mounted access the files (fuse
	// "allow_other"; for non-root users it needs user_allow_other in /etc/fuse.conf). Off by
	// default: disks of VMs are private. Permissions are checked by the kernel
	// (default_permissions) against the file modes either way.
	AllowOther bool
	// MaxIO is the largest read or write request and the kernel readahead size; 0 means
	// DefaultMaxIO. The kernel may cap it further.
	MaxIO int
	// Logger receives device errors (with export name and offset) that the kernel only sees
	// as an errno. nil discards them.
	Logger *slog.Logger
	// Debug logs every FUSE request and reply through the standard log package.
	Debug bool
}

// FS is a mounted tree of exports. Its methods may be called concurrently.
type FS struct {
	// set once
	dir    string
	opt    Options
	server *fuse.Server
	root   *fs.Inode
	uid    uint32
	gid    uint32

	mu      sync.Mutex
	exports map[string]*export   // guarded by mu
	dirs    map[string]*fs.Inode // guarded by mu; export name → its directory inode
}

// Mount mounts an empty tree on dir, which must be an existing directory, and serves it until
// Unmount (or an external `fusermount3 -u`).
func Mount(dir string, opt Options) (*FS, error) {
	if st, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("fusefs: mount point: %w", err)
	} else if !st.IsDir() {
		return nil, fmt.Errorf("fusefs: mount point %s is not a directory", dir)
	}
	if opt.MaxIO <= 0 {
		opt.MaxIO = DefaultMaxIO
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	f := &FS{
		dir:     dir,
		opt:     opt,
		uid:     uint32(os.Getuid()),
		gid:     uint32(os.Getgid()),
		exports: map[string]*export{},
		dirs:    map[string]*fs.Inode{},
	}
	timeout := time.Second
	mountOpts := []string{"default_permissions"}
	if opt.ReadOnly {
		mountOpts = append(mountOpts, "ro")
	}
	fuseLog := log.New(io.Discard, "", 0)
	if opt.Debug {
		fuseLog = log.Default()
	}
	root := &rootNode{f: f}
	server, err := fs.Mount(dir, root, &fs.Options{
		MountOptions: fuse.MountOptions{
			AllowOther:    opt.AllowOther,
			Options:       mountOpts,
			MaxWrite:      opt.MaxIO,
			MaxReadAhead:  opt.MaxIO,
			FsName:        "h2kvm",
			Name:          "h2kvm",
			DisableXAttrs: true,
			Debug:         opt.Debug,
			Logger:        fuseLog,
		},
		EntryTimeout: &timeout,
		AttrTimeout:  &timeout,
		UID:          f.uid,
		GID:          f.gid,
		Logger:       fuseLog,
	})
	if err != nil {
		return nil, fmt.Errorf("fusefs: mount %s: %w", dir, err)
	}
	f.server = server
	f.root = &root.Inode
	f.tuneReadahead()
	return f, nil
}

// tuneReadahead raises the kernel readahead of the mount to MaxIO. FUSE offers at most 128 KiB
// at INIT; the mount's backing-device setting is what lets readahead of read-only exports send
// MaxIO-sized requests (measured: 128 KiB → 1 MiB requests). Writing it needs root; without it
// reads still work, in smaller requests.
func (f *FS) tuneReadahead() {
	var st unix.Stat_t
	if err := unix.Stat(f.dir, &st); err != nil {
		f.opt.Logger.Debug("fusefs: readahead not tuned", "err", err)
		return
	}
	path := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev))
	if err := os.WriteFile(path, []byte(strconv.Itoa(f.opt.MaxIO>>10)), 0); err != nil {
		f.opt.Logger.Debug("fusefs: readahead not tuned", "err", err)
	}
}

// MountReadOnly mounts dir read-only with one export, for `h2kvm mount`: the disk appears as
// dir/name/disk.raw.
func MountReadOnly(dir, name string, dev vfs.Device) (*FS, error) {
	f, err := Mount(dir, Options{ReadOnly: true})
	if err != nil {
		return nil, err
	}
	if err := f.Add(name, dev, true); err != nil {
		return nil, errors.Join(err, f.Unmount())
	}
	return f, nil
}

// Dir returns the mount point.
func (f *FS) Dir() string { return f.dir }

// ValidName reports why name cannot be an export name, or nil.
func ValidName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("fusefs: empty export name: %w", ErrInvalidName)
	case len(name) > MaxNameLen:
		return fmt.Errorf("fusefs: export name of %d bytes exceeds %d: %w", len(name), MaxNameLen, ErrInvalidName)
	case name == "." || name == "..":
		return fmt.Errorf("fusefs: export name %q: %w", name, ErrInvalidName)
	}
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case c == '/':
			return fmt.Errorf("fusefs: export name %q contains '/': %w", name, ErrInvalidName)
		case c < 0x20 || c == 0x7f:
			return fmt.Errorf("fusefs: export name %q has control byte %#02x at %d: %w", name, c, i, ErrInvalidName)
		}
	}
	return nil
}

// Add exports dev as MOUNT/name/disk.raw. The export is read-only if readOnly is set, the mount
// is read-only, or dev does not implement vfs.Writable. dev MUST stay usable until Remove of
// the name returns nil or the file system is unmounted.
func (f *FS) Add(name string, dev vfs.Device, readOnly bool) error {
	if err := ValidName(name); err != nil {
		return err
	}
	if dev.Size() < 0 {
		return fmt.Errorf("fusefs: export %q: negative device size %d", name, dev.Size())
	}
	e := &export{
		name:  name,
		dev:   dev,
		size:  dev.Size(),
		added: time.Now(),
		log:   f.opt.Logger,
		uid:   f.uid,
		gid:   f.gid,
	}
	if w, ok := dev.(vfs.Writable); ok && !readOnly && !f.opt.ReadOnly {
		e.w = w
	}
	f.mu.Lock()
	if _, ok := f.exports[name]; ok {
		f.mu.Unlock()
		return fmt.Errorf("fusefs: export %q: %w", name, ErrExists)
	}
	ctx := context.Background()
	dir := f.root.NewPersistentInode(ctx, &fs.Inode{}, fs.StableAttr{Mode: syscall.S_IFDIR})
	file := dir.NewPersistentInode(ctx, &diskNode{e: e}, fs.StableAttr{Mode: syscall.S_IFREG})
	dir.AddChild(DiskFile, file, true)
	// Overwrite: a child of that name left by a lookup that raced with Remove is stale (the
	// export table, checked above, is the truth; see rootNode).
	f.root.AddChild(name, dir, true)
	f.exports[name] = e
	f.dirs[name] = dir
	f.mu.Unlock()
	// Drop a negative dentry the kernel may hold from an earlier lookup. ENOENT just means it
	// held none. Never under f.mu: the kernel may wait for a lookup we are serving.
	f.root.NotifyEntry(name)
	return nil
}

// Remove withdraws an export: new opens fail at once, then Remove waits until every open
// handle is released or ctx ends. On nil the device is no longer used and may be closed. If ctx
// ends first, the export stays as it was and the error wraps ErrBusy. Removing a name that is
// not exported returns an error wrapping vfs.ErrNotFound.
func (f *FS) Remove(ctx context.Context, name string) error {
	f.mu.Lock()
	e, ok := f.exports[name]
	if !ok {
		f.mu.Unlock()
		return fmt.Errorf("fusefs: remove export %q: %w", name, vfs.ErrNotFound)
	}
	e.mu.Lock()
	if e.draining {
		e.mu.Unlock()
		f.mu.Unlock()
		return fmt.Errorf("fusefs: remove export %q: another remove is in progress: %w", name, ErrBusy)
	}
	e.draining = true
	var idle chan struct{}
	if e.open > 0 {
		idle = make(chan struct{})
		e.idle = idle
	}
	e.mu.Unlock()
	f.mu.Unlock()

	if idle != nil {
		select {
		case <-idle:
		case <-ctx.Done():
			e.mu.Lock()
			open := e.open
			if open > 0 {
				e.draining = false
				e.idle = nil
			}
			e.mu.Unlock()
			if open > 0 {
				return fmt.Errorf("fusefs: remove export %q: %d open file handles (%v): %w",
					name, open, context.Cause(ctx), ErrBusy)
			}
		}
	}

	f.mu.Lock()
	dir := f.dirs[name]
	delete(f.exports, name)
	delete(f.dirs, name)
	f.root.RmChild(name)
	f.mu.Unlock()
	if errno := f.root.NotifyDelete(name, dir); errno != 0 {
		f.root.NotifyEntry(name)
	}
	return nil
}

// Names returns the exported names, sorted.
func (f *FS) Names() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	names := make([]string, 0, len(f.exports))
	for n := range f.exports {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Unmount unmounts the file system and waits for the server to stop. It fails (wrapping
// ErrBusy when the kernel says EBUSY) while the mount is in use. Calling it again after success
// is a no-op.
func (f *FS) Unmount() error {
	if err := f.server.Unmount(); err != nil {
		if isBusy(f.dir) {
			return fmt.Errorf("fusefs: unmount %s: %v: %w", f.dir, err, ErrBusy)
		}
		return fmt.Errorf("fusefs: unmount %s: %w", f.dir, err)
	}
	return nil
}

// Wait blocks until the file system is unmounted (by Unmount, Run or fusermount3 -u).
func (f *FS) Wait() { f.server.Wait() }

// Run serves until the file system is unmounted from outside (it then returns nil) or ctx ends.
// On ctx's end it unmounts; if the mount is busy it detaches it lazily (MNT_DETACH) and returns
// nil, the kernel ending the mount when its last file is closed. It returns an error when
// neither worked.
func (f *FS) Run(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		f.server.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	err := f.Unmount()
	if err == nil {
		return nil
	}
	if derr := syscall.Unmount(f.dir, syscall.MNT_DETACH); derr != nil {
		return errors.Join(err, fmt.Errorf("fusefs: lazy unmount %s: %w", f.dir, derr))
	}
	return nil
}

// isBusy reports whether dir is still a mount point after a failed unmount, which is what the
// kernel's EBUSY looks like through fusermount3 (it reports only text).
func isBusy(dir string) bool {
	var st, parent syscall.Stat_t
	if syscall.Stat(dir, &st) != nil || syscall.Stat(dir+"/..", &parent) != nil {
		return false
	}
	return st.Dev != parent.Dev
}
