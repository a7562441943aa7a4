package fusefs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/h2kvm/h2kvm/internal/testenv"
	"github.com/h2kvm/h2kvm/vfs"
)

const (
	kib = 1 << 10
	mib = 1 << 20
)

// testSize is deliberately not a multiple of the page size, so the end of file is exercised.
const testSize = 6*mib + 1000

// testLayout: data at [0,64K+100), [1M+8K,2M), [5M,end); a Zero range at [3M,3M+16K); the rest
// holes. MemDevice allocates in 4 KiB blocks, so the first data range ends at 68K.
func testDevice(t testing.TB) *vfs.MemDevice {
	return patterned(t, testSize,
		[][2]int64{{0, 64*kib + 100}, {mib + 8*kib, mib - 8*kib}, {5 * mib, testSize - 5*mib}},
		[][2]int64{{3 * mib, 16 * kib}})
}

func TestReadMatchesDeviceWithCmp(t *testing.T) {
	testenv.NeedTool(t, "cmp")
	f := mountTest(t, Options{})
	dev := testDevice(t)
	if err := f.Add("x", dev, true); err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(t.TempDir(), "want.raw")
	if err := os.WriteFile(want, contents(t, dev), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cmp", want, diskPath(f, "x")).CombinedOutput(); err != nil {
		t.Fatalf("cmp: %v: %s", err, out)
	}

	st, err := os.Stat(diskPath(f, "x"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != testSize || st.Mode() != 0o444 {
		t.Errorf("stat: size %d mode %v, want %d -r--r--r--", st.Size(), st.Mode(), int64(testSize))
	}
	if sys := st.Sys().(*syscall.Stat_t); sys.Uid != uint32(os.Getuid()) {
		t.Errorf("owner uid %d, want %d", sys.Uid, os.Getuid())
	}

	// Reads at odd offsets and across the end of the file.
	fh, err := os.Open(diskPath(f, "x"))
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	all := contents(t, dev)
	for _, r := range [][2]int64{{1, 3}, {64*kib + 90, 20}, {testSize - 10, 10}, {testSize - 5, 100}} {
		p := make([]byte, r[1])
		n, err := fh.ReadAt(p, r[0])
		wantN := min(r[1], testSize-r[0])
		if int64(n) != wantN || !bytes.Equal(p[:n], all[r[0]:r[0]+wantN]) {
			t.Errorf("ReadAt(%d, %d) = %d, %v; want %d matching bytes", r[0], r[1], n, err, wantN)
		}
	}
	if n, err := fh.ReadAt(make([]byte, 10), testSize); n != 0 || err == nil {
		t.Errorf("read at end: %d, %v; want 0, EOF", n, err)
	}
}

func TestReadaheadTuned(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("tuning the backing device's readahead needs root")
	}
	f := mountTest(t, Options{MaxIO: 512 * kib})
	var st syscall.Stat_t
	if err := syscall.Stat(f.Dir(), &st); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", st.Dev>>8&0xfff, st.Dev&0xff|st.Dev>>12&0xfff00))
	if err != nil || strings.TrimSpace(string(b)) != "512" {
		t.Errorf("read_ahead_kb = %q, %v; want 512", b, err)
	}
}

func TestDirectoryListing(t *testing.T) {
	f := mountTest(t, Options{})
	for _, name := range []string{"b", "a", "disk with space"} {
		if err := f.Add(name, vfs.NewMemDevice(4096), false); err != nil {
			t.Fatal(err)
		}
	}
	ents, err := os.ReadDir(f.Dir())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		if !e.IsDir() {
			t.Errorf("%s is not a directory", e.Name())
		}
		names = append(names, e.Name())
	}
	slices.Sort(names)
	if want := []string{"a", "b", "disk with space"}; !slices.Equal(names, want) || !slices.Equal(f.Names(), want) {
		t.Errorf("root lists %q, Names %q; want %q", names, f.Names(), want)
	}
	ents, err = os.ReadDir(filepath.Join(f.Dir(), "a"))
	if err != nil || len(ents) != 1 || ents[0].Name() != DiskFile || !ents[0].Type().IsRegular() {
		t.Errorf("export dir lists %v, %v; want one regular %s", ents, err, DiskFile)
	}
}

func TestReadOnlyExports(t *testing.T) {
	testenv.NeedTool(t, "dd")
	f := mountTest(t, Options{})
	mem := testDevice(t)
	if err := f.Add("flag", mem, true); err != nil {
		t.Fatal(err)
	}
	if err := f.Add("nowrite", readOnlyDev{mem}, false); err != nil {
		t.Fatal(err)
	}
	before := contents(t, mem)
	for _, name := range []string{"flag", "nowrite"} {
		p := diskPath(f, name)
		if st, err := os.Stat(p); err != nil || st.Mode() != 0o444 {
			t.Errorf("%s: mode %v, %v; want 0444", name, st.Mode(), err)
		}
		for _, flag := range []int{os.O_WRONLY, os.O_RDWR} {
			if fh, err := os.OpenFile(p, flag, 0); !errors.Is(err, syscall.EROFS) {
				t.Errorf("%s: open flag %#x: %v, want EROFS", name, flag, err)
				if fh != nil {
					fh.Close()
				}
			}
		}
		if err := os.Truncate(p, 0); !errors.Is(err, syscall.EROFS) {
			t.Errorf("%s: truncate: %v, want EROFS", name, err)
		}
		out, err := exec.Command("dd", "if=/dev/zero", "of="+p, "bs=4096", "count=1", "conv=notrunc").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "Read-only file system") {
			t.Errorf("%s: dd write: %v: %s; want failure with EROFS", name, err, out)
		}
	}
	if !bytes.Equal(before, contents(t, mem)) {
		t.Error("device changed through a read-only export")
	}
}

func TestMountReadOnly(t *testing.T) {
	requireFUSE(t)
	dir := t.TempDir()
	mem := testDevice(t)
	f, err := MountReadOnly(dir, "disk", mem)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := f.Unmount(); err != nil {
			t.Error(err)
		}
	}()
	// The mount itself is "ro": even an export added as writable is read-only.
	if err := f.Add("rw", mem, false); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"disk", "rw"} {
		if st, err := os.Stat(diskPath(f, name)); err != nil || st.Mode() != 0o444 {
			t.Errorf("%s: mode %v, %v; want 0444", name, st.Mode(), err)
		}
		if _, err := os.OpenFile(diskPath(f, name), os.O_RDWR, 0); !errors.Is(err, syscall.EROFS) {
			t.Errorf("%s: open O_RDWR: %v, want EROFS", name, err)
		}
	}
	got, err := os.ReadFile(diskPath(f, "disk"))
	if err != nil || !bytes.Equal(got, contents(t, mem)) {
		t.Errorf("read: %d bytes, %v; want the device's %d bytes", len(got), err, mem.Size())
	}
}

func TestWritableExport(t *testing.T) {
	f := mountTest(t, Options{})
	dev := &countingDev{MemDevice: testDevice(t)}
	if err := f.Add("w", dev, false); err != nil {
		t.Fatal(err)
	}
	p := diskPath(f, "w")
	if st, err := os.Stat(p); err != nil || st.Mode() != 0o644 || st.Size() != testSize {
		t.Fatalf("stat: %v, %v; want 0644 size %d", st, err, int64(testSize))
	}
	fh, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	ctx := context.Background()
	want := contents(t, dev)
	rng := rand.New(rand.NewPCG(1, 2))
	for _, w := range [][2]int64{{0, 1}, {4095, 2}, {2*mib + 17, 3 * mib / 2}, {mib, 300 * kib}, {testSize - 7, 7}} {
		data := make([]byte, w[1])
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		if n, err := fh.WriteAt(data, w[0]); err != nil || n != len(data) {
			t.Fatalf("pwrite(%d, %d): %d, %v", w[0], w[1], n, err)
		}
		copy(want[w[0]:], data)
	}
	if got := contents(t, dev); !bytes.Equal(got, want) {
		t.Error("device bytes differ from what was written through FUSE")
	}
	// Direct I/O: a change made on the device is seen through the open file at once.
	if _, err := dev.WriteAt(ctx, []byte("behind FUSE's back"), 100); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 18)
	if _, err := fh.ReadAt(got, 100); err != nil || string(got) != "behind FUSE's back" {
		t.Errorf("read after device write: %q, %v", got, err)
	}

	// The file has a fixed size.
	if n, err := fh.WriteAt([]byte("abc"), testSize); n != 0 || !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("write at end: %d, %v; want ENOSPC", n, err)
	}
	if n, err := syscall.Pwrite(int(fh.Fd()), []byte("0123456789"), testSize-4); n != 4 || err != nil {
		t.Errorf("pwrite across end: %d, %v; want a short write of 4 bytes", n, err)
	}
	if got := contents(t, dev)[testSize-4:]; string(got) != "0123" {
		t.Errorf("last 4 bytes %q after a write across the end", got)
	}
	if err := fh.Truncate(testSize - 1); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("shrink: %v, want EINVAL", err)
	}
	if err := fh.Truncate(testSize); err != nil {
		t.Errorf("truncate to the same size: %v", err)
	}
	if err := os.Chmod(p, 0o600); !errors.Is(err, syscall.EPERM) {
		t.Errorf("chmod: %v, want EPERM", err)
	}
	if _, err := os.OpenFile(p, os.O_RDWR|os.O_TRUNC, 0); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("open O_TRUNC: %v, want EINVAL", err)
	}
	if st, err := os.Stat(p); err != nil || st.Size() != testSize {
		t.Errorf("size after refused truncates: %v, %v", st, err)
	}

	// fsync and fdatasync reach Flush.
	if err := fh.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Fdatasync(int(fh.Fd())); err != nil {
		t.Fatal(err)
	}
	if n := dev.flushes.Load(); n != 2 {
		t.Errorf("Flush called %d times, want 2", n)
	}

	// fallocate: punch a hole → Trim; zero a range → Zero; plain allocation is a no-op.
	const punchHole, keepSize, zeroRange = 0x02, 0x01, 0x10
	fd := int(fh.Fd())
	if err := syscall.Fallocate(fd, punchHole|keepSize, 5*mib, 8*kib); err != nil {
		t.Fatalf("punch hole: %v", err)
	}
	if dev.trims.Load() != 1 {
		t.Errorf("Trim called %d times, want 1", dev.trims.Load())
	}
	if err := syscall.Fallocate(fd, zeroRange, 5*mib+64*kib, 8*kib); err != nil {
		t.Errorf("zero range: %v", err) // needs a kernel whose FUSE passes ZERO_RANGE on
	} else if dev.zeros.Load() != 1 {
		t.Errorf("Zero called %d times, want 1", dev.zeros.Load())
	}
	if err := syscall.Fallocate(fd, 0, 0, 4096); err != nil {
		t.Errorf("plain fallocate inside the file: %v", err)
	}
	if err := syscall.Fallocate(fd, 0, testSize-10, 4096); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("fallocate growing the file: %v, want ENOSPC", err)
	}
	exts, err := dev.Extents(ctx, 5*mib, 80*kib)
	if err != nil {
		t.Fatal(err)
	}
	wantKinds := []vfs.ExtentKind{vfs.Hole, vfs.Data, vfs.Zero, vfs.Data}
	var kinds []vfs.ExtentKind
	for _, x := range exts {
		kinds = append(kinds, x.Kind)
	}
	if dev.zeros.Load() == 1 && !slices.Equal(kinds, wantKinds) {
		t.Errorf("extents after fallocate: %v, want kinds %v", exts, wantKinds)
	}
	b := make([]byte, 8*kib)
	if _, err := fh.ReadAt(b, 5*mib); err != nil || !bytes.Equal(b, make([]byte, 8*kib)) {
		t.Errorf("punched range does not read as zeros: %v", err)
	}
}

func TestSeekDataHole(t *testing.T) {
	f := mountTest(t, Options{})
	if err := f.Add("x", testDevice(t), true); err != nil {
		t.Fatal(err)
	}
	// A device ending in a hole: SEEK_DATA past its last data is ENXIO.
	if err := f.Add("tail", patterned(t, 2*mib, [][2]int64{{4 * kib, 4 * kib}}, nil), true); err != nil {
		t.Fatal(err)
	}
	const seekData, seekHole = 3, 4
	cases := []struct {
		name   string
		off    int64
		whence int
		want   int64 // -1: ENXIO
	}{
		{"x", 0, seekData, 0},
		{"x", 100, seekData, 100},
		{"x", 0, seekHole, 68 * kib},
		{"x", 68 * kib, seekData, mib + 8*kib},
		{"x", mib + 8*kib, seekHole, 2 * mib},
		{"x", 2 * mib, seekData, 5 * mib}, // the Zero range at 3M is a hole too
		{"x", 3*mib + 1, seekHole, 3*mib + 1},
		{"x", 5 * mib, seekHole, testSize}, // the implicit hole at EOF
		{"x", testSize - 1, seekData, testSize - 1},
		{"x", testSize, seekData, -1},
		{"x", testSize, seekHole, -1},
		{"tail", 0, seekData, 4 * kib},
		{"tail", 8 * kib, seekData, -1},
		{"tail", 8 * kib, seekHole, 8 * kib},
	}
	files := map[string]*os.File{}
	for _, name := range []string{"x", "tail"} {
		fh, err := os.Open(diskPath(f, name))
		if err != nil {
			t.Fatal(err)
		}
		defer fh.Close()
		files[name] = fh
	}
	for _, c := range cases {
		got, err := syscall.Seek(int(files[c.name].Fd()), c.off, c.whence)
		if c.want < 0 {
			if !errors.Is(err, syscall.ENXIO) {
				t.Errorf("%s: lseek(%d, %d) = %d, %v; want ENXIO", c.name, c.off, c.whence, got, err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%s: lseek(%d, %d) = %d, %v; want %d", c.name, c.off, c.whence, got, err, c.want)
		}
	}
}

// cp --sparse=auto relies on SEEK_DATA/SEEK_HOLE: the copy must be identical and sparse.
func TestCpSparseCopy(t *testing.T) {
	testenv.NeedTool(t, "cp", "cmp")
	f := mountTest(t, Options{})
	dev := testDevice(t)
	if err := f.Add("x", dev, true); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "copy.raw")
	if out, err := exec.Command("cp", "--sparse=auto", diskPath(f, "x"), dst).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, out)
	}
	got, err := os.ReadFile(dst)
	if err != nil || !bytes.Equal(got, contents(t, dev)) {
		t.Fatalf("copy differs from device (%v)", err)
	}
	st, err := os.Stat(dst)
	if err != nil {
		t.Fatal(err)
	}
	// Data: 68K + 1016K + ~1M; holes: ~4M. Allow file system rounding.
	if alloc := st.Sys().(*syscall.Stat_t).Blocks * 512; alloc > 3*mib {
		t.Errorf("copy allocates %d bytes of %d: holes were not skipped", alloc, st.Size())
	}
}

func TestConcurrentReaders(t *testing.T) {
	f := mountTest(t, Options{})
	dev := testDevice(t)
	for _, name := range []string{"ro", "rw"} {
		if err := f.Add(name, dev, name == "ro"); err != nil {
			t.Fatal(err)
		}
	}
	all := contents(t, dev)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := []string{"ro", "rw"}[g%2]
			fh, err := os.Open(diskPath(f, name))
			if err != nil {
				errs <- err
				return
			}
			defer fh.Close()
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			for range 100 {
				off := rng.Int64N(testSize)
				p := make([]byte, rng.Int64N(300*kib)+1)
				n, err := fh.ReadAt(p, off)
				wantN := min(int64(len(p)), testSize-off)
				if int64(n) != wantN || !bytes.Equal(p[:n], all[off:off+wantN]) {
					errs <- fmt.Errorf("%s: ReadAt(%d, %d) = %d, %v: wrong bytes", name, off, len(p), n, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestDeviceErrorsBecomeErrno(t *testing.T) {
	f := mountTest(t, Options{})
	mem := vfs.NewMemDevice(64 * kib)
	if err := f.Add("corrupt", failingDev{mem, fmt.Errorf("vmdk: a.vmdk: grain table 3: %w", vfs.ErrCorrupt)}, true); err != nil {
		t.Fatal(err)
	}
	if err := f.Add("unsupported", failingDev{mem, fmt.Errorf("vmdk: %w", vfs.ErrUnsupported)}, true); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]syscall.Errno{"corrupt": syscall.EIO, "unsupported": syscall.ENOTSUP} {
		_, err := os.ReadFile(diskPath(f, name))
		if !errors.Is(err, want) {
			t.Errorf("%s: read: %v, want %v", name, err, want)
		}
	}
}

func TestToErrno(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("layer: %w", err) }
	cases := []struct {
		err  error
		want syscall.Errno
	}{
		{nil, 0},
		{wrap(vfs.ErrOutOfRange), syscall.EINVAL},
		{wrap(vfs.ErrReadOnly), syscall.EROFS},
		{wrap(vfs.ErrUnsupported), syscall.ENOTSUP},
		{context.Canceled, syscall.EINTR},
		{wrap(context.Canceled), syscall.EINTR},
		{wrap(context.DeadlineExceeded), syscall.ETIMEDOUT},
		{wrap(ErrBusy), syscall.EBUSY},
		{wrap(syscall.ENOSPC), syscall.ENOSPC},
		{wrap(vfs.ErrCorrupt), syscall.EIO},
		{wrap(vfs.ErrTransient), syscall.EIO},
		{errors.New("anything"), syscall.EIO},
	}
	for _, c := range cases {
		if got := toErrno(c.err); got != c.want {
			t.Errorf("toErrno(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

func TestValidName(t *testing.T) {
	for _, name := range []string{"a", "vm-1_disk.0", "disk with space", strings.Repeat("n", MaxNameLen), "ünï"} {
		if err := ValidName(name); err != nil {
			t.Errorf("ValidName(%q): %v", name, err)
		}
	}
	for _, name := range []string{"", ".", "..", "a/b", "/", "a\x00b", "tab\there", "\x7f", strings.Repeat("n", MaxNameLen+1)} {
		if err := ValidName(name); !errors.Is(err, ErrInvalidName) {
			t.Errorf("ValidName(%q) = %v, want ErrInvalidName", name, err)
		}
	}
}
