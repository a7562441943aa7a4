package vmdk

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/h2kvm/h2kvm/internal/testenv"
	"github.com/h2kvm/h2kvm/vfs"
	"github.com/h2kvm/h2kvm/vfs/vmdk/vmdkgen"
)

func esxSESparseLink(parent string, cid uint32, base []byte, size int64, reverse bool) vmdkgen.Link {
	l := vmdkgen.Link{
		Name: "snap", ParentName: parent, ParentCID: cid, VirtualSize: size,
		Writes: esxDeltaWrites(),
		// Zero and unmapped grains over base data: both must hide it.
		Zeros:    []vmdkgen.Range{{Off: 3000 << 10, Len: 8192}, {Off: 20 << 10, Len: 1}},
		Unmapped: []vmdkgen.Range{{Off: 1536 << 10, Len: 12288}},
		Reverse:  reverse,
	}
	if base != nil {
		l.Parent = bytes.NewReader(base)
	}
	return l
}

func TestSESparseAgainstQemu(t *testing.T) {
	const size = 4 << 20
	for _, reverse := range []bool{false, true} {
		t.Run(fmt.Sprintf("reverse%v", reverse), func(t *testing.T) {
			dir := t.TempDir()
			parent, cid, baseRaw := esxMakeBase(t, dir, size)
			l := esxSESparseLink(parent, cid, baseRaw, size, reverse)
			files, err := vmdkgen.WriteSESparse(dir, l)
			if err != nil {
				t.Fatal(err)
			}
			esxCheckDelta(t, openSESparse, l, files, baseRaw)
		})
	}
}

func TestSESparseWithoutParent(t *testing.T) {
	testenv.NeedTool(t, "qemu-img")
	dir := t.TempDir()
	// Capacity not a multiple of the 4 KiB grain, spanning three 16 MiB grain tables, with more
	// than 4096 data grains so that grain indices use both halves of the rotated encoding.
	l := esxSESparseLink("", 0, nil, 33<<20+1536, false)
	l.Writes = append(l.Writes,
		vmdkgen.Write{Off: 8 << 20, Data: esxPattern(7, 18<<20)},
		vmdkgen.Write{Off: 33<<20 + 1000, Data: esxPattern(8, 536)},
		vmdkgen.Write{Off: 32<<20 - 10, Data: esxPattern(9, 20)})
	files, err := vmdkgen.WriteSESparse(dir, l)
	if err != nil {
		t.Fatal(err)
	}
	esxCheckDelta(t, openSESparse, l, files, nil)
}

// TestMixedChainAgainstQemu: hosted sparse base ← COWD ← seSparse, read by qemu.
func TestMixedChainAgainstQemu(t *testing.T) {
	const size = 4 << 20
	dir := t.TempDir()
	parent, cid, baseRaw := esxMakeBase(t, dir, size)
	mid := vmdkgen.Link{Name: "mid", ParentName: parent, ParentCID: cid, VirtualSize: size,
		Writes: []vmdkgen.Write{{Off: 100 << 10, Data: esxPattern(40, 300000)}, {Off: 3000 << 10, Data: esxPattern(41, 1000)}},
		Parent: bytes.NewReader(baseRaw)}
	mf, err := vmdkgen.WriteCOWD(dir, mid)
	if err != nil {
		t.Fatal(err)
	}
	midRaw, err := mid.Expected(baseRaw, mf.GrainSize)
	if err != nil {
		t.Fatal(err)
	}
	top := esxSESparseLink(filepath.Base(mf.Descriptor), mf.CID, midRaw, size, true)
	tf, err := vmdkgen.WriteSESparse(dir, top)
	if err != nil {
		t.Fatal(err)
	}
	esxCheckDelta(t, openSESparse, top, tf, midRaw)
}

func TestSESparseBadInput(t *testing.T) {
	testenv.NeedTool(t, "qemu-img")
	dir := t.TempDir()
	files, err := vmdkgen.WriteSESparse(dir, vmdkgen.Link{Name: "x", VirtualSize: 1 << 20,
		Writes: []vmdkgen.Write{{Off: 0, Data: esxPattern(9, 8192)}}, Zeros: []vmdkgen.Range{{Off: 65536, Len: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(files.Extent)
	if err != nil {
		t.Fatal(err)
	}
	if err := esxReadAll(openSESparse, good); err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	u := func(off int) uint64 { return le.Uint64(good[off:]) }
	gd, gt, grains := int(u(128))*512, int(u(144))*512, int(u(192))*512
	set := func(off int, v uint64) func([]byte) []byte {
		return func(b []byte) []byte { le.PutUint64(b[off:], v); return b }
	}
	for _, tc := range []struct {
		name string
		mut  func(b []byte) []byte
		want error
		// qemuOpen: qemu refuses the file at open; qemuRead: qemu fails reading it.
		qemuOpen, qemuRead bool
	}{
		{"bad magic", set(0, 0xcafebabf), vfs.ErrCorrupt, true, false},
		{"version", set(8, 0x0000000200000002), vfs.ErrUnsupported, true, false},
		{"grain size", set(24, 16), vfs.ErrUnsupported, true, false},
		{"table size", set(32, 128), vfs.ErrUnsupported, true, false},
		{"flags", set(40, 1), vfs.ErrUnsupported, true, false},
		{"reserved", set(64, 1), vfs.ErrUnsupported, true, false},
		{"padding", func(b []byte) []byte { b[300] = 1; return b }, vfs.ErrUnsupported, true, false},
		{"volatile magic", set(512, 0xcafebabe), vfs.ErrCorrupt, true, false},
		{"dirty journal", set(512+24, 1), vfs.ErrUnsupported, true, false},
		{"volatile padding", func(b []byte) []byte { b[1000] = 1; return b }, vfs.ErrUnsupported, true, false},
		{"directory entry bits", set(gd, 0x2000000000000000), vfs.ErrCorrupt, false, true},
		{"table entry type 5", set(gt, 0x5000000000000000), vfs.ErrCorrupt, false, true},
		{"unallocated entry not zero", set(gt+8*100, 7), vfs.ErrCorrupt, false, true},
		{"table past end", set(gd, 0x1000000000001000), vfs.ErrTruncated, false, false},
		{"grain past end", set(gt, 0x3000000000001000), vfs.ErrTruncated, false, false},
		{"absurd capacity", set(16, 1<<62), vfs.ErrCorrupt, false, false},
		{"directory too short", set(136, 0), vfs.ErrCorrupt, false, false},
		{"directory past end", set(128, 1<<40), vfs.ErrTruncated, false, false},
		{"volatile past end", set(80, 1<<40), vfs.ErrTruncated, false, false},
		{"truncated in grains", func(b []byte) []byte { return b[:grains+4000] }, vfs.ErrTruncated, false, false},
		{"truncated in header", func(b []byte) []byte { return b[:300] }, vfs.ErrTruncated, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.mut(bytes.Clone(good))
			err := esxReadAll(openSESparse, b)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), "test.vmdk") {
				t.Fatalf("error %q does not name the file", err)
			}
			if !tc.qemuOpen && !tc.qemuRead {
				return
			}
			// Cross-check: qemu refuses the same file too.
			if err := os.WriteFile(files.Extent, b, 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command("qemu-img", "convert", "-f", "vmdk", "-O", "raw", files.Descriptor, filepath.Join(t.TempDir(), "o.raw")).CombinedOutput()
			if err == nil {
				t.Fatalf("qemu-img accepted the file we refuse")
			}
			t.Logf("qemu: %s", bytes.TrimSpace(out))
			if tc.qemuOpen != strings.Contains(string(out), "Could not open") {
				t.Fatalf("qemu refused at the wrong stage: %s", out)
			}
		})
	}
}

// TestESXChainAgainstQemu opens hosted sparse base ← COWD ← seSparse with Open and holds the
// flattened bytes and block status to qemu's.
func TestESXChainAgainstQemu(t *testing.T) {
	const size = 4 << 20
	dir := t.TempDir()
	parent, cid, baseRaw := esxMakeBase(t, dir, size)
	mid := vmdkgen.Link{Name: "mid", ParentName: parent, ParentCID: cid, VirtualSize: size, GrainSectors: 16,
		Writes: []vmdkgen.Write{{Off: 100 << 10, Data: esxPattern(40, 300000)}, {Off: 3000 << 10, Data: esxPattern(41, 1000)}},
		Parent: bytes.NewReader(baseRaw), Reverse: true}
	mf, err := vmdkgen.WriteCOWD(dir, mid)
	if err != nil {
		t.Fatal(err)
	}
	midRaw, err := mid.Expected(baseRaw, mf.GrainSize)
	if err != nil {
		t.Fatal(err)
	}
	top := esxSESparseLink(filepath.Base(mf.Descriptor), mf.CID, midRaw, size, false)
	tf, err := vmdkgen.WriteSESparse(dir, top)
	if err != nil {
		t.Fatal(err)
	}
	want := esxQemuRaw(t, tf.Descriptor)
	ctx := t.Context()
	c, err := Open(ctx, vfs.LocalOpener{Root: dir}, tf.Descriptor, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Len() != 3 || c.Size() != size {
		t.Fatalf("chain of %d links, %d bytes; want 3, %d", c.Len(), c.Size(), size)
	}
	got := make([]byte, size)
	if n, err := c.ReadAt(ctx, got, 0); err != nil || n != size {
		t.Fatalf("ReadAt: %d, %v", n, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("chain read differs from qemu-img convert at %d", esxFirstDiff(got, want))
	}
	// Block status: qemu's depth and data/zero per sector for what some link holds.
	var qm []struct {
		Start, Length       int64
		Depth               int
		Present, Zero, Data bool
	}
	if err := json.Unmarshal(esxRun(t, "qemu-img", "map", "-f", "vmdk", "--output=json", tf.Descriptor), &qm); err != nil {
		t.Fatal(err)
	}
	for _, q := range qm {
		for off := q.Start; off < q.Start+q.Length; {
			ex, err := c.Extents(ctx, off, q.Start+q.Length-off)
			if err != nil {
				t.Fatal(err)
			}
			e := ex[0]
			wantKind := vfs.Hole
			if q.Present {
				wantKind = vfs.Zero
				if q.Data {
					wantKind = vfs.Data
				}
			}
			if e.Kind != wantKind || q.Present && e.Depth != q.Depth {
				t.Fatalf("at %d: we say %v at depth %d; qemu says %+v", off, e.Kind, e.Depth, q)
			}
			off = min(e.End(), q.Start+q.Length)
		}
	}
}
