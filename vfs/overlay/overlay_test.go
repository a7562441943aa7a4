package overlay_test

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"

	"github.com/h2kvm/h2kvm/vfs"
	"github.com/h2kvm/h2kvm/vfs/overlay"
	"github.com/h2kvm/h2kvm/vfs/vfstest"
)

const bs = overlay.DefaultBlockSize

// memMap is an in-memory MapStore that outlives Overlay instances. Each Commit is one step
// (never split).
type memMap struct {
	mu      sync.Mutex
	snap    overlay.Snapshot
	commits int
	runs    int // runs of blocks committed, in all
}

func (m *memMap) Load(ctx context.Context) (overlay.Snapshot, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.snap
	s.Runs = slices.Clone(m.snap.Runs)
	return s, nil
}

func (m *memMap) Commit(ctx context.Context, l overlay.Layout, up []overlay.Run) (uint64, error) {
	if err := overlay.CheckRuns(up); err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.snap.Layout = l
	for _, u := range up {
		var next []overlay.Run
		for _, r := range m.snap.Runs { // the parts of r outside u
			if r.First < u.First {
				next = append(next, overlay.Run{First: r.First, End: min(r.End, u.First), State: r.State})
			}
			if r.End > u.End {
				next = append(next, overlay.Run{First: max(r.First, u.End), End: r.End, State: r.State})
			}
		}
		if u.State != overlay.Absent {
			next = append(next, u)
		}
		slices.SortFunc(next, func(a, b overlay.Run) int { return cmp.Compare(a.First, b.First) })
		m.snap.Runs = m.snap.Runs[:0]
		for _, r := range next {
			if n := len(m.snap.Runs); n > 0 && m.snap.Runs[n-1].End == r.First && m.snap.Runs[n-1].State == r.State {
				m.snap.Runs[n-1].End = r.End
				continue
			}
			m.snap.Runs = append(m.snap.Runs, r)
		}
	}
	m.snap.Generation++
	m.commits++
	m.runs += len(up)
	return m.snap.Generation, nil
}

func (m *memMap) Clear(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.snap = overlay.Snapshot{}
	return nil
}

// randomBase returns a base device of size bytes with data in some places, zeroed ranges and
// holes, and its bytes.
func randomBase(t *testing.T, size int64, seed uint64) (*vfs.MemDevice, []byte) {
	t.Helper()
	ctx := context.Background()
	dev := vfs.NewMemDevice(size)
	want := make([]byte, size)
	rng := rand.New(rand.NewPCG(seed, 7))
	for range 12 {
		off := rng.Int64N(size - 1)
		p := make([]byte, 1+rng.Int64N(min(200<<10, size-off)))
		for i := range p {
			p[i] = byte(rng.UintN(255)) + 1
		}
		if _, err := dev.WriteAt(ctx, p, off); err != nil {
			t.Fatal(err)
		}
		copy(want[off:], p)
	}
	if err := dev.Zero(ctx, size/2/4096*4096, 64<<10); err != nil {
		t.Fatal(err)
	}
	clear(want[size/2/4096*4096:][:64<<10])
	return dev, want
}

func open(t *testing.T, base vfs.Device, cfg overlay.Config) *overlay.Overlay {
	t.Helper()
	if cfg.Path == "" {
		cfg.Path = filepath.Join(t.TempDir(), "overlay")
	}
	o, err := overlay.Open(context.Background(), base, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	return o
}

func TestWritableContract(t *testing.T) {
	vfstest.TestWritable(t, func(t *testing.T, size int64) vfs.Writable {
		return open(t, vfs.NewMemDevice(size), overlay.Config{Map: &memMap{}})
	})
}

// TestOverBase runs random writes over a base with data and checks the merge with the device
// contract suite, that the base is untouched, and that extents report the right depths.
func TestOverBase(t *testing.T) {
	ctx := context.Background()
	size := int64(4<<20 + 5000) // short last block
	base, want := randomBase(t, size, 1)
	orig := bytes.Clone(want)
	o := open(t, base, overlay.Config{Map: &memMap{}})
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 200 {
		off := rng.Int64N(size)
		n := 1 + rng.Int64N(min(150<<10, size-off))
		switch rng.IntN(4) {
		case 0, 1:
			p := make([]byte, n)
			for j := range p {
				p[j] = byte(rng.UintN(256))
			}
			if _, err := o.WriteAt(ctx, p, off); err != nil {
				t.Fatalf("op %d: %v", i, err)
			}
			copy(want[off:], p)
		case 2:
			if err := o.Zero(ctx, off, n); err != nil {
				t.Fatalf("op %d: %v", i, err)
			}
			clear(want[off : off+n])
		case 3:
			if err := o.Trim(ctx, off, n); err != nil {
				t.Fatalf("op %d: %v", i, err)
			}
			clear(want[off : off+n])
		}
	}
	vfstest.TestDevice(t, o, want)
	got := make([]byte, size)
	if _, err := base.ReadAt(ctx, got, 0); err != nil || !bytes.Equal(got, orig) {
		t.Fatalf("base changed (err %v)", err)
	}
	// Blocks untouched by the overlay report the base's extents one level down.
	ext, err := o.Extents(ctx, 0, size)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ext {
		if e.Depth == 0 && e.Kind == vfs.Hole || e.Depth > 1 {
			t.Errorf("extent %+v: overlay extents have depth 0 and are never holes; base extents have depth 1", e)
		}
		if e.Depth == 1 {
			be, _ := base.Extents(ctx, e.Off, 1)
			if be[0].Kind != e.Kind {
				t.Errorf("extent %+v, base says %+v", e, be[0])
			}
		}
	}
}

func TestPartialWriteCopiesUp(t *testing.T) {
	ctx := context.Background()
	base, want := randomBase(t, 1<<20, 2)
	o := open(t, base, overlay.Config{})
	if _, err := o.WriteAt(ctx, []byte("hello"), bs+100); err != nil {
		t.Fatal(err)
	}
	copy(want[bs+100:], "hello")
	got := make([]byte, bs)
	if _, err := o.ReadAt(ctx, got, bs); err != nil || !bytes.Equal(got, want[bs:2*bs]) {
		t.Fatalf("block after partial write differs from base+write (err %v)", err)
	}
	if st := o.Stats(); st.CopyUps != 1 || st.DataBlocks != 1 || st.OverlayBytes != bs {
		t.Errorf("stats %+v", st)
	}
	e, err := o.Extents(ctx, bs, bs)
	if err != nil || len(e) != 1 || e[0] != (vfs.Extent{Off: bs, Len: bs, Kind: vfs.Data}) {
		t.Errorf("extents of the written block: %+v %v", e, err)
	}
}

func TestTrimAndZeroHideBase(t *testing.T) {
	ctx := context.Background()
	size := int64(1 << 20)
	base := vfs.NewMemDevice(size)
	full := bytes.Repeat([]byte{0xee}, bs)
	base.WriteAt(ctx, full, 0)
	base.WriteAt(ctx, full, bs)
	o := open(t, base, overlay.Config{})
	if err := o.Trim(ctx, 0, bs); err != nil {
		t.Fatal(err)
	}
	if err := o.Zero(ctx, bs, bs); err != nil {
		t.Fatal(err)
	}
	if err := o.Trim(ctx, 4*bs, 2*bs); err != nil { // base hole: stays a base hole
		t.Fatal(err)
	}
	ext, err := o.Extents(ctx, 0, 8*bs)
	if err != nil {
		t.Fatal(err)
	}
	want := []vfs.Extent{
		{Off: 0, Len: 2 * bs, Kind: vfs.Zero},
		{Off: 2 * bs, Len: 6 * bs, Kind: vfs.Hole, Depth: 1},
	}
	if fmt.Sprint(ext) != fmt.Sprint(want) {
		t.Errorf("extents %+v, want %+v", ext, want)
	}
	got := make([]byte, 2*bs)
	o.ReadAt(ctx, got, 0)
	if !bytes.Equal(got, make([]byte, 2*bs)) {
		t.Error("trimmed/zeroed blocks do not read zeros")
	}
	if st := o.Stats(); st.TrimmedBlocks != 1 || st.ZeroedBlocks != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestKeepAndReopen(t *testing.T) {
	ctx := context.Background()
	base, want := randomBase(t, 2<<20, 5)
	m := &memMap{}
	path := filepath.Join(t.TempDir(), "ov")
	o, err := overlay.Open(ctx, base, overlay.Config{Path: path, Map: m})
	if err != nil {
		t.Fatal(err)
	}
	p := bytes.Repeat([]byte{7}, 100000)
	o.WriteAt(ctx, p, 30000)
	copy(want[30000:], p)
	o.Zero(ctx, 4*bs, 3*bs)
	clear(want[4*bs : 7*bs])
	if err := o.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if st := o.Stats(); st.Generation != 1 || st.DirtyBlocks != 0 {
		t.Errorf("after flush: %+v", st)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	o2 := open(t, base, overlay.Config{Path: path, Map: m})
	vfstest.TestDevice(t, o2, want)
	// Wrong base size: refused.
	if _, err := overlay.Open(ctx, vfs.NewMemDevice(3<<20), overlay.Config{Path: path, Map: m}); !errors.Is(err, overlay.ErrMismatch) {
		t.Errorf("open over a base of another size: %v", err)
	}
}

func TestDiscard(t *testing.T) {
	ctx := context.Background()
	base, want := randomBase(t, 1<<20, 6)
	m := &memMap{}
	path := filepath.Join(t.TempDir(), "ov")
	o, err := overlay.Open(ctx, base, overlay.Config{Path: path, Map: m, Discard: true})
	if err != nil {
		t.Fatal(err)
	}
	o.WriteAt(ctx, []byte{1, 2, 3}, 0)
	o.Flush(ctx)
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("discarded overlay file still there: %v", err)
	}
	if s, _ := m.Load(ctx); len(s.Runs) != 0 || s.Layout != (overlay.Layout{}) {
		t.Errorf("discarded map still there: %+v", s)
	}
	o2 := open(t, base, overlay.Config{Path: path, Map: m})
	vfstest.TestDevice(t, o2, want)
}

// TestConcurrentWritesOneBlock: writers of disjoint parts of one absent block all copy up;
// serialization per block must keep every write.
func TestConcurrentWritesOneBlock(t *testing.T) {
	ctx := context.Background()
	base, want := randomBase(t, 1<<20, 8)
	o := open(t, base, overlay.Config{})
	var wg sync.WaitGroup
	for k := range 16 {
		p := bytes.Repeat([]byte{byte(0x10 + k)}, 4096)
		copy(want[3*bs+k*4096:], p)
		wg.Go(func() {
			if _, err := o.WriteAt(ctx, p, 3*bs+int64(k)*4096); err != nil {
				t.Error(err)
			}
		})
		wg.Go(func() { // concurrent readers of the same block
			if _, err := o.ReadAt(ctx, make([]byte, bs), 3*bs); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	got := make([]byte, bs)
	o.ReadAt(ctx, got, 3*bs)
	if !bytes.Equal(got, want[3*bs:4*bs]) {
		t.Fatal("concurrent partial writes to one block lost data")
	}
}

func TestOverlayFileIsSparse(t *testing.T) {
	ctx := context.Background()
	o := open(t, vfs.NewMemDevice(1<<30), overlay.Config{Path: filepath.Join(t.TempDir(), "ov")})
	o.WriteAt(ctx, []byte{1}, 512<<20)
	o.WriteAt(ctx, make([]byte, bs), 0)
	o.Zero(ctx, 0, bs)
	if st := o.Stats(); st.DataBlocks != 1 || st.ZeroedBlocks != 1 {
		t.Errorf("stats %+v", st)
	}
	if a := allocated(t, o.Path()); a != bs {
		t.Errorf("overlay file of a 1 GiB device with one data block holds %d bytes", a)
	}
}

func TestReopenPunchesUnrecordedBlocks(t *testing.T) {
	ctx := context.Background()
	base := vfs.NewMemDevice(1 << 20)
	m := &memMap{}
	path := filepath.Join(t.TempDir(), "ov")
	o, err := overlay.Open(ctx, base, overlay.Config{Path: path, Map: m})
	if err != nil {
		t.Fatal(err)
	}
	o.WriteAt(ctx, bytes.Repeat([]byte{1}, bs), 0)
	o.Flush(ctx)
	// Unflushed writes that a crash leaves in the file without a map entry.
	o.WriteAt(ctx, bytes.Repeat([]byte{2}, 3*bs), 4*bs)
	f, _ := os.OpenFile(path, os.O_RDWR, 0)
	f.Sync()
	f.Close()
	if a := allocated(t, path); a != 4*bs {
		t.Fatalf("before reopen the file holds %d bytes", a)
	}
	o2 := open(t, base, overlay.Config{Path: path, Map: m}) // o is abandoned, as by a crash
	if a := allocated(t, path); a != bs {
		t.Errorf("after reopen the file holds %d bytes, want the one recorded block", a)
	}
	got := make([]byte, 8*bs)
	o2.ReadAt(ctx, got, 0)
	want := append(bytes.Repeat([]byte{1}, bs), make([]byte, 7*bs)...)
	if !bytes.Equal(got, want) {
		t.Error("reopened overlay reads unflushed blocks")
	}
}

func allocated(t *testing.T, path string) int64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

// sparseBase is a base device of any size with bytes 0xcc in a few ranges and holes elsewhere,
// whose Extents cost per range, not per byte.
type sparseBase struct {
	size int64
	data [][2]int64 // sorted, disjoint [off, end)
}

func (b sparseBase) Size() int64 { return b.size }

func (b sparseBase) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	clear(p)
	for _, d := range b.data {
		for i := max(off, d[0]); i < min(off+int64(len(p)), d[1]); i++ {
			p[i-off] = 0xcc
		}
	}
	return len(p), nil
}

func (b sparseBase) Extents(ctx context.Context, off, length int64) ([]vfs.Extent, error) {
	end := min(b.size, off+length)
	var out []vfs.Extent
	pos := off
	for _, d := range b.data {
		a, e := max(pos, d[0]), min(end, d[1])
		if a >= e {
			continue
		}
		if a > pos {
			out = append(out, vfs.Extent{Off: pos, Len: a - pos, Kind: vfs.Hole})
		}
		out = append(out, vfs.Extent{Off: a, Len: e - a, Kind: vfs.Data})
		pos = e
	}
	if pos < end {
		out = append(out, vfs.Extent{Off: pos, Len: end - pos, Kind: vfs.Hole})
	}
	return out, nil
}

// TestTrimAndZeroWholeDiskInRuns trims, then zeroes, a 4 TiB overlay over a base with a little
// data: the trim hides only the blocks with base data, the zero the rest, and both cost runs
// in memory and in the map, not blocks.
func TestTrimAndZeroWholeDiskInRuns(t *testing.T) {
	const size = 4 << 40
	ctx := context.Background()
	base := sparseBase{size: size, data: [][2]int64{{100, 200}, {5 * bs, 7*bs + 1}, {size / 2, size/2 + 3*bs}, {size - 10, size}}}
	m := &memMap{}
	o := open(t, base, overlay.Config{Map: m})
	if err := o.Trim(ctx, 0, size); err != nil {
		t.Fatal(err)
	}
	const withData = 1 + 3 + 3 + 1
	if st := o.Stats(); st.TrimmedBlocks != withData || st.ZeroedBlocks != 0 || st.DirtyBlocks != withData {
		t.Fatalf("after trimming the disk: %+v", st)
	}
	es, err := o.Extents(ctx, 0, size)
	if err != nil {
		t.Fatal(err)
	}
	want := []vfs.Extent{{Off: 0, Len: bs, Kind: vfs.Zero}, {Off: bs, Len: 4 * bs, Kind: vfs.Hole, Depth: 1},
		{Off: 5 * bs, Len: 3 * bs, Kind: vfs.Zero}, {Off: 8 * bs, Len: size/2 - 8*bs, Kind: vfs.Hole, Depth: 1},
		{Off: size / 2, Len: 3 * bs, Kind: vfs.Zero}, {Off: size/2 + 3*bs, Len: size/2 - 4*bs, Kind: vfs.Hole, Depth: 1},
		{Off: size - bs, Len: bs, Kind: vfs.Zero}}
	if !slices.Equal(es, want) {
		t.Fatalf("extents after trimming the disk:\n%+v\nwant\n%+v", es, want)
	}
	if err := o.Zero(ctx, 0, size); err != nil {
		t.Fatal(err)
	}
	if err := o.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if st := o.Stats(); st.TrimmedBlocks != withData || st.ZeroedBlocks != size/bs-withData || st.DirtyBlocks != 0 {
		t.Fatalf("after zeroing the disk: %+v", st)
	}
	if m.commits != 1 || m.runs > 10 {
		t.Errorf("%d commits of %d runs in all; want one of a few runs", m.commits, m.runs)
	}
	if es, err := o.Extents(ctx, 0, size); err != nil || !slices.Equal(es, []vfs.Extent{{Off: 0, Len: size, Kind: vfs.Zero}}) {
		t.Fatalf("extents after zeroing the disk: %+v, %v", es, err)
	}
	p := make([]byte, 300)
	for _, off := range []int64{0, 5 * bs, size / 2, size - 300} {
		if _, err := o.ReadAt(ctx, p, off); err != nil || !bytes.Equal(p, make([]byte, 300)) {
			t.Fatalf("read at %d: %v", off, err)
		}
	}
}
