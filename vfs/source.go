package vfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Source is random-access bytes of one file: a local file, a file on a datastore read with HTTP
// Range requests, a file read over SFTP, an NBD export, a member of an OVA. Formats (VMDK) read
// their descriptors, tables and grains from Sources.
//
// ReadAt follows io.ReaderAt (a short read only at the end, with io.EOF). Implementations MUST be
// safe for concurrent use; remote ones retry transient errors within their own budget.
type Source interface {
	ReadAt(ctx context.Context, p []byte, off int64) (int, error)
	Size() int64
	// Name is the file's location as the user would recognise it (a path or a URL without
	// credentials); it appears in error messages.
	Name() string
	Close() error
}

// Opener opens files that are named relative to other files: the extents a descriptor lists and
// the parent a delta names. Every file of one VMDK chain is opened through one Opener, so a chain
// on a datastore is read from the datastore.
type Opener interface {
	// Open opens the file at the location name, as returned by Resolve or given by the user.
	Open(ctx context.Context, name string) (Source, error)
	// Resolve returns the location of the file called rel in a descriptor found at base. It
	// MUST refuse (ErrChain) a rel that would leave the folder tree the Opener allows.
	Resolve(base, rel string) (string, error)
}

// LocalOpener opens local files. Relative names resolve against the folder of the file naming
// them; absolute names are allowed (VMware writes absolute parent hints) but are still checked
// against Root when Root is set.
//
// The Root check compares real paths (symbolic links resolved, as filepath.EvalSymlinks does)
// of both Root and the name, so a link inside Root that leads out of it is refused. A name
// that does not exist yet is checked through its longest existing parent. The check happens at
// Resolve: a link changed between Resolve and Open is not caught.
type LocalOpener struct {
	// Root, when not empty, is the folder no resolved name may leave.
	Root string
}

var _ Opener = LocalOpener{}

// Open opens a local file read-only.
func (o LocalOpener) Open(ctx context.Context, name string) (Source, error) {
	return OpenFile(name)
}

// Resolve resolves rel against the folder of base.
func (o LocalOpener) Resolve(base, rel string) (string, error) {
	var p string
	if filepath.IsAbs(rel) {
		p = filepath.Clean(rel)
	} else {
		p = filepath.Join(filepath.Dir(base), rel)
	}
	if o.Root != "" {
		if !Within(o.Root, p) {
			return "", fmt.Errorf("%q named in %s leaves %s: %w", rel, base, o.Root, ErrChain)
		}
	}
	return p, nil
}

// Within reports whether the local path p is root or below it once symbolic links are
// resolved in both (a missing tail of p is taken as written below its longest existing
// parent). A path it cannot resolve (a dangling link, a loop, a permission error) is not
// within.
func Within(root, p string) bool {
	rr, err := realPath(root)
	if err != nil {
		return false
	}
	rp, err := realPath(p)
	if err != nil {
		return false
	}
	return lexicallyWithin(rr, rp)
}

func lexicallyWithin(root, p string) bool {
	r, err := filepath.Rel(root, p)
	return err == nil && r != ".." && !strings.HasPrefix(r, ".."+string(filepath.Separator))
}

// realPath is filepath.EvalSymlinks of an absolute p, extended to names that do not exist:
// their longest existing parent is resolved and the rest appended.
func realPath(p string) (string, error) {
	p, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	var rest []string
	for {
		r, err := filepath.EvalSymlinks(p)
		if err == nil {
			return filepath.Join(append([]string{r}, rest...)...), nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		if _, lerr := os.Lstat(p); lerr == nil {
			return "", err // p exists but leads nowhere: a dangling link
		}
		parent := filepath.Dir(p)
		if parent == p {
			return "", err
		}
		rest = append([]string{filepath.Base(p)}, rest...)
		p = parent
	}
}

// File is a local file as a Source.
type File struct {
	f    *os.File
	size int64
	name string
}

var _ Source = (*File)(nil)

// OpenFile opens a local file read-only as a Source.
func OpenFile(name string) (*File, error) {
	f, err := os.Open(name)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, fmt.Errorf("open %s: %w", name, ErrNotFound)
		}
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if st.IsDir() {
		f.Close()
		return nil, fmt.Errorf("open %s: is a directory", name)
	}
	return &File{f: f, size: st.Size(), name: name}, nil
}

func (f *File) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	return f.f.ReadAt(p, off)
}

func (f *File) Size() int64  { return f.size }
func (f *File) Name() string { return f.name }
func (f *File) Close() error { return f.f.Close() }
func (f *File) Fd() uintptr  { return f.f.Fd() }

// ReadFull reads len(p) bytes at off from s, turning a short read into an error that names the
// source: io.ErrUnexpectedEOF wrapped with ErrTruncated.
func ReadFull(ctx context.Context, s Source, p []byte, off int64) error {
	n, err := s.ReadAt(ctx, p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		return fmt.Errorf("%s: %d bytes at offset %d: file ends at %d: %w", s.Name(), len(p), off, s.Size(), ErrTruncated)
	}
	return err
}

// ClipRead bounds a read of n bytes at off from a file of size bytes, as io.ReaderAt wants it:
// it returns how many bytes to read, and io.EOF when that is fewer than n (a read of 0 bytes at
// the end is not an error). A negative offset is an error wrapping ErrOutOfRange.
func ClipRead(size, off int64, n int) (int, error) {
	switch {
	case off < 0:
		return 0, fmt.Errorf("negative offset %d: %w", off, ErrOutOfRange)
	case off >= size:
		if n == 0 {
			return 0, nil
		}
		return 0, io.EOF
	case int64(n) > size-off:
		return int(size - off), io.EOF
	}
	return n, nil
}
