package linux

import (
	"context"
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"

	"libguestfs.org/guestfs"
)

// guest wraps a libguestfs handle with the few file helpers the fixers use. Paths are guest
// paths; the root filesystem must be mounted at /.
type guest struct {
	g   *guestfs.Guestfs
	ctx context.Context // bounds host commands the helpers start
}

func (x guest) context() context.Context {
	if x.ctx == nil {
		return context.Background()
	}
	return x.ctx
}

// gerr turns a *guestfs.GuestfsError into a plain error without a typed-nil trap.
func gerr(err error) error {
	var ge *guestfs.GuestfsError
	if errors.As(err, &ge) && ge == nil {
		return nil
	}
	return err
}

// resolve returns the path with symlinks resolved inside the guest (libguestfs resolves them
// chrooted), or "" when it does not exist.
func (x guest) resolve(p string) string {
	// exists first: libguestfs prints every failed call on stderr, and most probes miss.
	if !x.exists(p) {
		return ""
	}
	rp, err := x.g.Realpath(p)
	if err != nil || rp == "" {
		return ""
	}
	return rp
}

// isFile reports whether p (after symlinks) is a regular file.
func (x guest) isFile(p string) bool {
	rp := x.resolve(p)
	if rp == "" {
		return false
	}
	ok, err := x.g.Is_file(rp, nil)
	return err == nil && ok
}

// isDir reports whether p (after symlinks) is a directory.
func (x guest) isDir(p string) bool {
	rp := x.resolve(p)
	if rp == "" {
		return false
	}
	ok, err := x.g.Is_dir(rp, nil)
	return err == nil && ok
}

// exists reports whether p exists (a dangling symlink counts).
func (x guest) exists(p string) bool {
	ok, err := x.g.Exists(p)
	return err == nil && ok
}

// readFile returns a regular file's content; found is false when it does not exist.
func (x guest) readFile(p string) (content string, found bool, err error) {
	rp := x.resolve(p)
	if rp == "" {
		return "", false, nil
	}
	if ok, err := x.g.Is_file(rp, nil); err != nil || !ok {
		return "", false, nil
	}
	b, err := x.g.Read_file(rp)
	if err = gerr(err); err != nil {
		return "", true, fmt.Errorf("read %s: %w", p, err)
	}
	return string(b), true, nil
}

// glob expands a pattern in the guest, sorted; no match gives nil.
func (x guest) glob(pattern string) []string {
	m, err := x.g.Glob_expand(pattern, nil)
	if err != nil {
		return nil
	}
	sort.Strings(m)
	return m
}

// firstExisting returns the first of paths that exists as a file.
func (x guest) firstFile(paths ...string) string {
	for _, p := range paths {
		if x.isFile(p) {
			return p
		}
	}
	return ""
}

// hasCommand reports whether one of the usual bin directories holds name.
func (x guest) hasCommand(name string) string {
	for _, d := range []string{"/usr/sbin", "/usr/bin", "/sbin", "/bin"} {
		p := path.Join(d, name)
		if x.isFile(p) {
			return p
		}
	}
	return ""
}

// run runs a command inside the guest (libguestfs bind-mounts /dev, /proc and /sys into the
// guest root for it) and returns its combined output.
func (x guest) run(argv ...string) (string, error) {
	// sh -c so that stderr is captured with stdout: libguestfs's command only returns stdout and
	// puts stderr in the error message on failure.
	out, err := x.g.Command([]string{"/bin/sh", "-c", shellJoin(argv) + " 2>&1"})
	if err = gerr(err); err != nil {
		return out, fmt.Errorf("%s: %w: %v", strings.Join(argv, " "), ErrGuestCommand, err)
	}
	return out, nil
}

// shellJoin quotes argv for /bin/sh.
func shellJoin(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		if a != "" && strings.Trim(a, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./=:,+") == "" {
			q[i] = a
			continue
		}
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

// tail returns the last n bytes of s.
func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
