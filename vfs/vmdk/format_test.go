package vmdk

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/h2kvm/h2kvm/vfs"
	"github.com/h2kvm/h2kvm/vfs/vfstest"
)

const testSize = 8 << 20

// patternCmds writes patterns at aligned and unaligned places, across grain boundaries, at
// the end, and zero writes over some of them.
var patternCmds = []string{
	"write -P 0x11 0 100k",
	"write -P 0x22 196000 5000",
	"write -P 0x33 1M 2M",
	"write -z 1536k 128k",
	"write -z 64k 64k",
	"write -P 0x44 8384512 4096", // last 4 KiB
	"write -P 0x55 5000000 1",
}

func openChain(t *testing.T, dir, name string, opt Options) *Chain {
	t.Helper()
	c, err := Open(context.Background(), vfs.LocalOpener{Root: dir}, filepath.Join(dir, name), opt)
	if err != nil {
		t.Fatalf("Open %s: %v", name, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// checkAgainstQemu runs the device contract with qemu-img's raw conversion as the expected
// bytes, and compares block status with qemu-img map.
func checkAgainstQemu(t *testing.T, dir, name string) *Chain {
	t.Helper()
	c := openChain(t, dir, name, Options{})
	file := filepath.Join(dir, name)
	want := qemuRaw(t, file)
	vfstest.TestDevice(t, c, want)
	checkMapAgainstQemu(t, c, file)
	return c
}

func TestQemuSubformats(t *testing.T) {
	for _, sub := range []string{
		"monolithicSparse", "monolithicSparse,zeroed_grain=on", "monolithicFlat",
		"twoGbMaxExtentSparse", "twoGbMaxExtentFlat", "streamOptimized",
	} {
		t.Run(sub, func(t *testing.T) {
			dir := t.TempDir()
			f := filepath.Join(dir, "disk.vmdk")
			if sub == "streamOptimized" {
				raw := filepath.Join(dir, "src.raw")
				run(t, "qemu-img", "create", "-f", "raw", raw, fmt.Sprint(testSize))
				run(t, "qemu-io", "-f", "raw", "-c", "write -P 0x11 0 100k", "-c", "write -P 0x22 196000 5000",
					"-c", "write -P 0x33 1M 2M", "-c", "write -z 1536k 128k", "-c", "write -P 0x44 8384512 4096", raw)
				run(t, "qemu-img", "convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized", raw, f)
				os.Remove(raw)
			} else {
				run(t, "qemu-img", "create", "-f", "vmdk", "-o", "subformat="+sub, f, fmt.Sprint(testSize))
				qemuIO(t, f, patternCmds...)
			}
			c := checkAgainstQemu(t, dir, "disk.vmdk")
			info, err := c.Info(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(info.Links) != 1 || info.VirtualSize != testSize || len(info.Links[0].Extents) == 0 {
				t.Fatalf("Info: %+v", info)
			}
		})
	}
}

// TestTwoGbMaxSplit uses a 5 GiB virtual disk so that the 2 GiB split really happens, with
// patterns written across both piece boundaries; files stay sparse.
func TestTwoGbMaxSplit(t *testing.T) {
	if testing.Short() {
		t.Skip("5 GiB sparse images")
	}
	for _, sub := range []string{"twoGbMaxExtentSparse", "twoGbMaxExtentFlat"} {
		t.Run(sub, func(t *testing.T) {
			dir := t.TempDir()
			f := filepath.Join(dir, "big.vmdk")
			run(t, "qemu-img", "create", "-f", "vmdk", "-o", "subformat="+sub, f, "5G")
			const piece = 4192256 * 512 // qemu's 2GbMax piece
			qemuIO(t, f,
				"write -P 0x61 0 64k",
				fmt.Sprintf("write -P 0x62 %d 200k", piece-100000),
				fmt.Sprintf("write -P 0x63 %d 4k", 2*piece-1000),
				fmt.Sprintf("write -z %d 64k", 2*piece+65536),
				fmt.Sprintf("write -P 0x64 %d 4096", 5<<30-4096),
			)
			c := openChain(t, dir, "big.vmdk", Options{})
			if got := len(c.links[0].extents); got != 3 {
				t.Fatalf("%d extents, want 3", got)
			}
			ref, err := os.Open(qemuRawFile(t, f))
			if err != nil {
				t.Fatal(err)
			}
			defer ref.Close()
			vfstest.TestDeviceReader(t, c, ref, 5<<30)
			// The boundaries, byte for byte.
			for _, off := range []int64{piece - 100000, 2*piece - 1000, 2*piece + 65536 - 10, 5<<30 - 4096} {
				got := make([]byte, 300000)
				want := make([]byte, 300000)
				n, _ := c.ReadAt(context.Background(), got, off)
				m, _ := ref.ReadAt(want, off)
				if n != m || !bytes.Equal(got[:n], want[:m]) {
					t.Fatalf("bytes at %d differ from qemu-img's", off)
				}
			}
			if sub == "twoGbMaxExtentSparse" {
				checkMapAgainstQemu(t, c, f)
			}
		})
	}
}

// TestChain builds base ← mid ← top with qemu-img and writes into each link.
func TestChain(t *testing.T) {
	dir := t.TempDir()
	base, mid, top := filepath.Join(dir, "base.vmdk"), filepath.Join(dir, "mid.vmdk"), filepath.Join(dir, "top.vmdk")
	run(t, "qemu-img", "create", "-f", "vmdk", "-o", "subformat=monolithicSparse,zeroed_grain=on", base, fmt.Sprint(testSize))
	qemuIO(t, base, "write -P 0xb0 0 4M", "write -P 0xb1 6M 1M")
	run(t, "qemu-img", "create", "-f", "vmdk", "-o", "zeroed_grain=on", "-b", "base.vmdk", "-F", "vmdk", mid)
	qemuIO(t, mid, "write -P 0xc0 1M 64k", "write -z 2M 128k", "write -P 0xc1 3000000 10000")
	run(t, "qemu-img", "create", "-f", "vmdk", "-b", "mid.vmdk", "-F", "vmdk", top)
	qemuIO(t, top, "write -P 0xd0 1M 4k", "write -P 0xd1 6500000 70000")

	c := checkAgainstQemu(t, dir, "top.vmdk")
	if c.Len() != 3 {
		t.Fatalf("Len() = %d, want 3", c.Len())
	}
	info, err := c.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.Links[0].Parent != mid || info.Links[1].Parent != base || info.Links[2].ParentHint != "" {
		t.Fatalf("parents: %+v", info.Links)
	}
	if info.Links[0].ParentCID != info.Links[1].CID {
		t.Fatalf("CIDs: top parentCID %s, mid CID %s", info.Links[0].ParentCID, info.Links[1].CID)
	}
	// Depths: 1M is in top (0); 3000000 in mid (1); 0 in base (2); 4M..6M nowhere (3).
	for _, tc := range []struct {
		off   int64
		kind  vfs.ExtentKind
		depth int
	}{{1 << 20, vfs.Data, 0}, {3000000, vfs.Data, 1}, {0, vfs.Data, 2}, {2 << 20, vfs.Zero, 1}, {5 << 20, vfs.Hole, 3}} {
		m, err := c.Extents(context.Background(), tc.off, 1)
		if err != nil || len(m) != 1 || m[0].Kind != tc.kind || m[0].Depth != tc.depth {
			t.Errorf("Extents(%d, 1) = %+v, %v; want %v at depth %d", tc.off, m, err, tc.kind, tc.depth)
		}
	}
}

// TestExt2 reads a VMDK written by VMware tooling (dfVFS test data).
func TestExt2(t *testing.T) {
	src := sharedTestdata("ext2.vmdk")
	if src == "" {
		t.Skip("shared test data (../shared/testdata beside the checkout) not present")
	}
	dir := t.TempDir()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ext2.vmdk"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	c := checkAgainstQemu(t, dir, "ext2.vmdk")
	info, err := c.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	l := info.Links[0]
	if l.CID != "dc80b6c7" || l.AdapterType != "ide" || l.HWVersion != "4" || l.CreateType != "monolithicSparse" ||
		l.Geometry == nil || l.Geometry.Cylinders != 8 || l.AllocatedBytes != 3*65536 || !l.EmbeddedDescriptor {
		t.Fatalf("Info: %+v", l)
	}
}

// sharedTestdata finds a file of the project's shared test data: the shared/ folder that sits
// beside the checkout (three levels up from this package), or /work/shared. "" when absent.
func sharedTestdata(name string) string {
	for _, dir := range []string{"../../../shared/testdata", "/work/shared/testdata"} {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}
