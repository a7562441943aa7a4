package sourcetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/h2kvm/h2kvm/vfs"
	"github.com/h2kvm/h2kvm/vfs/source/stats"
)

// Fixture is one file served by the implementation under test.
type Fixture struct {
	// Opener opens Name and the names it resolves from it.
	Opener vfs.Opener
	// Name is the location of a file holding exactly the bytes given to the constructor.
	Name string
	// Self, when set, is the file's name relative to its own folder ("disk.bin"): resolving it
	// against Name must open the same bytes.
	Self string
	// Missing, when set, is a name relative to Name's folder of a file that does not exist:
	// opening it must fail with vfs.ErrNotFound.
	Missing string
	// Escapes are names that Resolve(Name, …) must refuse with vfs.ErrChain. Nil means
	// DefaultEscapes.
	Escapes []string
	// Attempts is the retry budget (attempts per read) the source was given; it is needed
	// with FailNext.
	Attempts int
	// FailNext, when set, makes the next n read requests fail with a transient fault.
	FailNext func(n int)
	// Fail, when set, turns a transient fault of every read request on or off.
	Fail func(on bool)
	// Stall, when set, makes the server hold every read request without answering (on) or
	// answer again (off).
	Stall func(on bool)
}

// DefaultEscapes leave any folder a file may be in: up past the root, and an absolute path
// outside it.
var DefaultEscapes = []string{"../../../../../../etc/passwd", "/etc/passwd"}

// New serves content as a file and returns its Fixture. It may call t.Skip when a tool it needs
// is missing, and should release what it started with t.Cleanup.
type New func(t *testing.T, content []byte) Fixture

// Size is the length of the reference file Run reads: a MiB and an odd tail, so that the end
// is not on a block boundary.
const Size = 1<<20 + 333

// WriteFile writes content to a file called name in a new temporary folder and returns its
// path.
func WriteFile(t *testing.T, name string, content []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, content, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Content returns n reproducible pseudo-random bytes.
func Content(n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(0x50, 0x1e))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// Run runs the contract suite against the implementation newFixture serves.
func Run(t *testing.T, newFixture New) {
	t.Run("Empty", func(t *testing.T) { testEmpty(t, newFixture) })
	content := Content(Size)
	f := newFixture(t, content)
	src := open(t, f.Opener, f.Name)
	t.Run("ReadAt", func(t *testing.T) { testReadAt(t, src, content) })
	t.Run("PastEOF", func(t *testing.T) { testPastEOF(t, src) })
	t.Run("Parallel", func(t *testing.T) { testParallel(t, src, content) })
	t.Run("Context", func(t *testing.T) { testContext(t, f, src, content) })
	t.Run("Resolve", func(t *testing.T) { testResolve(t, f, content) })
	t.Run("Retry", func(t *testing.T) {
		if f.FailNext == nil && f.Fail == nil {
			t.Skip("the fixture has no fault hook")
		}
		testRetry(t, newFixture)
	})
}

func open(t *testing.T, o vfs.Opener, name string) vfs.Source {
	t.Helper()
	src, err := o.Open(context.Background(), name)
	if err != nil {
		t.Fatalf("open %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := src.Close(); err != nil {
			t.Errorf("close %s: %v", name, err)
		}
	})
	return src
}

// check reads len bytes at off and compares with the reference bytes and io.ReaderAt's rules.
func check(t *testing.T, src vfs.Source, content []byte, off int64, n int) bool {
	t.Helper()
	p := make([]byte, n)
	got, err := src.ReadAt(context.Background(), p, off)
	end := min(off+int64(n), int64(len(content)))
	want := int(max(0, end-off))
	switch {
	case got != want:
		t.Errorf("ReadAt(%d bytes at %d) = %d bytes (%v), want %d", n, off, got, err, want)
		return false
	case want < n && err != io.EOF:
		t.Errorf("ReadAt(%d bytes at %d) = %d bytes, err %v: a short read must return io.EOF itself", n, off, got, err)
		return false
	case want == n && err != nil:
		t.Errorf("ReadAt(%d bytes at %d) = %d bytes, err %v: a full read must return nil", n, off, got, err)
		return false
	case want > 0 && !bytes.Equal(p[:got], content[off:end]):
		i := 0
		for i < got && p[i] == content[off+int64(i)] {
			i++
		}
		t.Errorf("ReadAt(%d bytes at %d): wrong bytes from offset %d", n, off, off+int64(i))
		return false
	}
	return true
}

func snapshot(src vfs.Source) (stats.Snapshot, bool) {
	r, ok := src.(stats.Reporter)
	if !ok {
		return stats.Snapshot{}, false
	}
	return r.Stats(), true
}

func testEmpty(t *testing.T, newFixture New) {
	f := newFixture(t, nil)
	src := open(t, f.Opener, f.Name)
	if src.Size() != 0 {
		t.Fatalf("Size() = %d, want 0", src.Size())
	}
	if n, err := src.ReadAt(context.Background(), make([]byte, 10), 0); n != 0 || err != io.EOF {
		t.Fatalf("ReadAt(10 bytes at 0) of an empty file = %d, %v; want 0, io.EOF", n, err)
	}
}

func testReadAt(t *testing.T, src vfs.Source, content []byte) {
	size := int64(len(content))
	if src.Size() != size {
		t.Fatalf("Size() = %d, want %d", src.Size(), size)
	}
	if src.Name() == "" {
		t.Error("Name() is empty")
	}
	before, counted := snapshot(src)
	var read int64
	offs := []int64{0, 1, 511, 512, 4095, 4096, 65535, 65536, size / 2, size - 65537, size - 4097, size - 512, size - 2, size - 1}
	lens := []int{1, 2, 511, 512, 4096, 65536 + 3, 300000}
	for _, off := range offs {
		for _, n := range lens {
			if !check(t, src, content, off, n) {
				return
			}
			read += min(off+int64(n), size) - off
		}
	}
	for _, n := range []int{int(size), int(size) + 1} {
		if !check(t, src, content, 0, n) {
			return
		}
		read += size
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 100 {
		off, n := r.Int64N(size), r.IntN(200000)+1
		if !check(t, src, content, off, n) {
			return
		}
		read += min(off+int64(n), size) - off
	}
	if after, _ := snapshot(src); counted && after.BytesFetched-before.BytesFetched != read {
		t.Errorf("stats count %d bytes fetched, the reads returned %d", after.BytesFetched-before.BytesFetched, read)
	}
}

func testPastEOF(t *testing.T, src vfs.Source) {
	size := src.Size()
	for _, off := range []int64{size, size + 1, size + 1<<40} {
		if n, err := src.ReadAt(context.Background(), make([]byte, 100), off); n != 0 || err != io.EOF {
			t.Errorf("ReadAt(100 bytes at %d) of a %d-byte file = %d, %v; want 0, io.EOF", off, size, n, err)
		}
	}
	if n, err := src.ReadAt(context.Background(), make([]byte, 100), -1); n != 0 || err == nil || err == io.EOF {
		t.Errorf("ReadAt at offset -1 = %d, %v; want an error", n, err)
	}
}

func testParallel(t *testing.T, src vfs.Source, content []byte) {
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 7))
			for range 25 {
				if !check(t, src, content, r.Int64N(int64(len(content))), r.IntN(300000)+1) {
					return
				}
			}
		}()
	}
	wg.Wait()
}

func testContext(t *testing.T, f Fixture, src vfs.Source, content []byte) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// Opening may ignore the context (a local file) but not wrap its error.
	if s, err := f.Opener.Open(ctx, f.Name); err == nil {
		s.Close()
	} else if err != context.Canceled {
		t.Errorf("Open with a cancelled context: %v; want success or context.Canceled itself", err)
	}
	if _, err := src.ReadAt(ctx, make([]byte, 4096), 1000); err != context.Canceled {
		t.Errorf("ReadAt with a cancelled context: %v; want context.Canceled itself", err)
	}
	dctx, dcancel := context.WithDeadline(context.Background(), time.Unix(0, 0))
	defer dcancel()
	if _, err := src.ReadAt(dctx, make([]byte, 4096), 1000); err != context.DeadlineExceeded {
		t.Errorf("ReadAt with an expired context: %v; want context.DeadlineExceeded itself", err)
	}
	// The source still works.
	check(t, src, content, 1000, 4096)
	if f.Stall == nil {
		return
	}
	// A read the server holds ends when its context does, with ctx.Err() itself.
	f.Stall(true)
	sctx, scancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer scancel()
	_, err := src.ReadAt(sctx, make([]byte, 4096), 5000)
	f.Stall(false)
	if err != context.DeadlineExceeded {
		t.Errorf("ReadAt held by the server, context expired: %v; want context.DeadlineExceeded itself", err)
	}
	check(t, src, content, 5000, 4096)
}

func testResolve(t *testing.T, f Fixture, content []byte) {
	escapes := f.Escapes
	if escapes == nil {
		escapes = DefaultEscapes
	}
	for _, rel := range escapes {
		if got, err := f.Opener.Resolve(f.Name, rel); !errors.Is(err, vfs.ErrChain) {
			t.Errorf("Resolve(%s, %q) = %q, %v; want an error wrapping vfs.ErrChain", f.Name, rel, got, err)
		}
	}
	if f.Self != "" {
		name, err := f.Opener.Resolve(f.Name, f.Self)
		if err != nil {
			t.Fatalf("Resolve(%s, %q): %v", f.Name, f.Self, err)
		}
		src := open(t, f.Opener, name)
		p := make([]byte, len(content))
		if err := vfs.ReadFull(context.Background(), src, p, 0); err != nil || !bytes.Equal(p, content) {
			t.Errorf("%s (resolved from %q): %v, equal %v", name, f.Self, err, bytes.Equal(p, content))
		}
	}
	if f.Missing != "" {
		name, err := f.Opener.Resolve(f.Name, f.Missing)
		if err != nil {
			t.Fatalf("Resolve(%s, %q): %v", f.Name, f.Missing, err)
		}
		if src, err := f.Opener.Open(context.Background(), name); !errors.Is(err, vfs.ErrNotFound) {
			if err == nil {
				src.Close()
			}
			t.Errorf("Open(%s) of a missing file: %v; want an error wrapping vfs.ErrNotFound", name, err)
		}
	}
}

func testRetry(t *testing.T, newFixture New) {
	content := Content(300000)
	f := newFixture(t, content)
	src := open(t, f.Opener, f.Name)
	const off, n = 1234, 100000
	failed := func(what string) {
		t.Helper()
		p := make([]byte, n)
		got, err := src.ReadAt(context.Background(), p, off)
		if !errors.Is(err, vfs.ErrTransient) || !strings.Contains(err.Error(), src.Name()) || !strings.Contains(err.Error(), fmt.Sprint(off)) {
			t.Errorf("%s: ReadAt = %d, %v; want an error wrapping vfs.ErrTransient naming %s and offset %d", what, got, err, src.Name(), off)
		}
		if got < 0 || got > n || !bytes.Equal(p[:got], content[off:off+got]) {
			t.Errorf("%s: %d wrong bytes returned with the error", what, got)
		}
	}
	if f.FailNext != nil {
		if f.Attempts < 2 {
			t.Fatalf("fixture: FailNext needs Attempts ≥ 2, got %d", f.Attempts)
		}
		before, counted := snapshot(src)
		f.FailNext(f.Attempts - 1)
		check(t, src, content, off, n)
		if after, _ := snapshot(src); counted && after.Retries-before.Retries < int64(f.Attempts-1) {
			t.Errorf("%d faults absorbed with %d retries counted", f.Attempts-1, after.Retries-before.Retries)
		}
		f.FailNext(f.Attempts)
		failed(fmt.Sprintf("%d faults, budget %d", f.Attempts, f.Attempts))
		check(t, src, content, off, n)
	}
	if f.Fail != nil {
		f.Fail(true)
		failed("persistent fault")
		f.Fail(false)
		check(t, src, content, off, n)
	}
}
