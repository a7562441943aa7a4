package vmdk

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/h2kvm/h2kvm/vfs"
	"github.com/h2kvm/h2kvm/vfs/vfstest"
)

// sparseDisk makes a monolithicSparse image with some data and returns its path and bytes.
func sparseDisk(t *testing.T, dir string) (string, []byte) {
	t.Helper()
	f := filepath.Join(dir, "disk.vmdk")
	run(t, "qemu-img", "create", "-f", "vmdk", "-o", "subformat=monolithicSparse", f, fmt.Sprint(testSize))
	qemuIO(t, f, "write -P 0x11 0 256k", "write -P 0x22 5M 64k")
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	return f, b
}

func header(t *testing.T, b []byte) sparseHeader {
	t.Helper()
	h, err := parseSparseHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func write(t *testing.T, name string, b []byte) {
	t.Helper()
	if err := os.WriteFile(name, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// expectErr checks that err wraps target and names the file.
func expectErr(t *testing.T, err, target error, file string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %v", target)
	}
	if !errors.Is(err, target) {
		t.Fatalf("error %q does not wrap %v", err, target)
	}
	t.Log(err)
	if file != "" && !strings.Contains(err.Error(), filepath.Base(file)) {
		t.Fatalf("error %q does not name %s", err, filepath.Base(file))
	}
}

func TestCorruptSparse(t *testing.T) {
	dir := t.TempDir()
	f, orig := sparseDisk(t, dir)
	h := header(t, orig)
	want := qemuRaw(t, f)
	ctx := context.Background()
	le := binary.LittleEndian
	gte0 := int64(le.Uint32(orig[h.gdOffset*512:])) * 512   // first primary GT
	rgte0 := int64(le.Uint32(orig[h.rgdOffset*512:])) * 512 // first redundant GT
	open := func(b []byte) (*Chain, error) {
		write(t, f, b)
		return Open(ctx, vfs.LocalOpener{Root: dir}, f, Options{})
	}
	patch := func(mod func(b []byte)) []byte {
		b := append([]byte(nil), orig...)
		mod(b)
		return b
	}

	t.Run("TruncatedHeader", func(t *testing.T) {
		_, err := open(orig[:300])
		expectErr(t, err, vfs.ErrTruncated, f)
	})
	t.Run("TruncatedMetadata", func(t *testing.T) {
		_, err := open(orig[:20*512])
		expectErr(t, err, vfs.ErrTruncated, f)
	})
	t.Run("TruncatedGrains", func(t *testing.T) {
		c, err := open(orig[:int64(h.overHead)*512+100000])
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, err = c.ReadAt(ctx, make([]byte, 4096), 5<<20)
		expectErr(t, err, vfs.ErrTruncated, f)
	})
	t.Run("BadMagic", func(t *testing.T) {
		_, err := open(patch(func(b []byte) { copy(b, "XDMV") }))
		expectErr(t, err, vfs.ErrCorrupt, f)
	})
	t.Run("AbsurdCapacity", func(t *testing.T) {
		_, err := open(patch(func(b []byte) { le.PutUint64(b[12:], 1<<50) }))
		expectErr(t, err, vfs.ErrCorrupt, f)
	})
	t.Run("CapacityPastFile", func(t *testing.T) {
		// 1 TiB: allowed, but the grain directory it needs runs past the end of the file.
		_, err := open(patch(func(b []byte) { le.PutUint64(b[12:], 1<<31) }))
		if err == nil {
			t.Fatal("opened")
		}
	})
	t.Run("GTPastEOFBoth", func(t *testing.T) {
		c, err := open(patch(func(b []byte) {
			le.PutUint32(b[gte0:], 0x7fffffff)
			le.PutUint32(b[rgte0:], 0x7fffffff)
		}))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, err = c.ReadAt(ctx, make([]byte, 512), 0)
		expectErr(t, err, vfs.ErrTruncated, f)
	})
	t.Run("GTIntoMetadata", func(t *testing.T) {
		c, err := open(patch(func(b []byte) {
			le.PutUint32(b[gte0:], 3)
			le.PutUint32(b[rgte0:], 3)
		}))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, err = c.ReadAt(ctx, make([]byte, 512), 0)
		expectErr(t, err, vfs.ErrCorrupt, f)
	})
	t.Run("RedundantGTFallback", func(t *testing.T) {
		c, err := open(patch(func(b []byte) { le.PutUint32(b[gte0:], 0x7fffffff) }))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		vfstest.TestDevice(t, c, want)
		info, _ := c.Info(ctx)
		if n := info.Links[0].Extents[0].Notes; len(n) == 0 || !strings.Contains(n[0], "redundant") {
			t.Fatalf("notes: %q", n)
		}
	})
	t.Run("RedundantGDFallback", func(t *testing.T) {
		c, err := open(patch(func(b []byte) { le.PutUint32(b[h.gdOffset*512:], 0xfffffff0) }))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		vfstest.TestDevice(t, c, want)
		info, _ := c.Info(ctx)
		if n := info.Links[0].Extents[0].Notes; len(n) == 0 || !strings.Contains(n[0], "redundant") {
			t.Fatalf("notes: %q", n)
		}
	})
	t.Run("BothGDsBad", func(t *testing.T) {
		_, err := open(patch(func(b []byte) {
			le.PutUint32(b[h.gdOffset*512:], 0xfffffff0)
			le.PutUint32(b[h.rgdOffset*512:], 0xfffffff0)
		}))
		expectErr(t, err, vfs.ErrTruncated, f)
	})
	t.Run("TextMode", func(t *testing.T) {
		_, err := open(patch(func(b []byte) { copy(b[73:], "\n \n\n") }))
		expectErr(t, err, vfs.ErrCorrupt, f)
	})
	t.Run("BadEmbeddedDescriptor", func(t *testing.T) {
		_, err := open(patch(func(b []byte) { copy(b[512:], "garbage!!") }))
		expectErr(t, err, vfs.ErrCorrupt, f)
	})
}

// chainDir makes base.vmdk ← top.vmdk with text descriptors (twoGbMaxExtentSparse), so the
// tests can edit descriptors as text.
func chainDir(t *testing.T) (dir string, base, top string) {
	t.Helper()
	dir = t.TempDir()
	base, top = filepath.Join(dir, "base.vmdk"), filepath.Join(dir, "top.vmdk")
	run(t, "qemu-img", "create", "-f", "vmdk", "-o", "subformat=twoGbMaxExtentSparse", base, fmt.Sprint(testSize))
	qemuIO(t, base, "write -P 0x77 0 1M")
	run(t, "qemu-img", "create", "-f", "vmdk", "-o", "subformat=twoGbMaxExtentSparse", "-b", "base.vmdk", "-F", "vmdk", top)
	qemuIO(t, top, "write -P 0x88 512k 64k")
	return dir, base, top
}

func editDescriptor(t *testing.T, name string, edit func(string) string) {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	s := edit(string(b))
	if s == string(b) {
		t.Fatalf("edit of %s changed nothing", name)
	}
	write(t, name, []byte(s))
}

func setKey(key, val string) func(string) string {
	return func(s string) string {
		var out []string
		for _, l := range strings.Split(s, "\n") {
			if strings.HasPrefix(l, key+"=") {
				l = key + "=" + val
			}
			out = append(out, l)
		}
		return strings.Join(out, "\n")
	}
}

func TestChainErrors(t *testing.T) {
	ctx := context.Background()
	t.Run("Good", func(t *testing.T) {
		dir, _, top := chainDir(t)
		checkAgainstQemu(t, dir, filepath.Base(top))
	})
	t.Run("CIDMismatch", func(t *testing.T) {
		dir, base, top := chainDir(t)
		qemuIO(t, base, "write -P 0x99 2M 4k") // qemu gives the base a new CID
		_, err := Open(ctx, vfs.LocalOpener{Root: dir}, top, Options{})
		expectErr(t, err, vfs.ErrChain, top)
		if !strings.Contains(err.Error(), "base.vmdk") {
			t.Fatalf("%v does not name the parent", err)
		}
		c, err := Open(ctx, vfs.LocalOpener{Root: dir}, top, Options{IgnoreCIDMismatch: true})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		info, _ := c.Info(ctx)
		if len(info.Warnings) == 0 {
			t.Fatal("no warning for the ignored mismatch")
		}
	})
	t.Run("Cycle", func(t *testing.T) {
		dir, base, top := chainDir(t)
		editDescriptor(t, base, func(s string) string {
			return strings.Replace(s, "\nparentCID=", "\nparentFileNameHint=\"top.vmdk\"\nparentCID=", 1)
		})
		_, err := Open(ctx, vfs.LocalOpener{Root: dir}, top, Options{IgnoreCIDMismatch: true})
		expectErr(t, err, vfs.ErrChain, "")
		if !strings.Contains(err.Error(), "cycle") {
			t.Fatalf("%v does not say cycle", err)
		}
	})
	t.Run("SelfCycle", func(t *testing.T) {
		dir, _, top := chainDir(t)
		editDescriptor(t, top, setKey("parentFileNameHint", `"./top.vmdk"`))
		_, err := Open(ctx, vfs.LocalOpener{Root: dir}, top, Options{IgnoreCIDMismatch: true})
		expectErr(t, err, vfs.ErrChain, top)
	})
	t.Run("EscapingHint", func(t *testing.T) {
		dir, _, top := chainDir(t)
		editDescriptor(t, top, setKey("parentFileNameHint", `"../elsewhere/base.vmdk"`))
		_, err := Open(ctx, vfs.LocalOpener{Root: dir}, top, Options{})
		expectErr(t, err, vfs.ErrChain, top)
	})
	t.Run("MissingParent", func(t *testing.T) {
		dir, _, top := chainDir(t)
		editDescriptor(t, top, setKey("parentFileNameHint", `"gone.vmdk"`))
		_, err := Open(ctx, vfs.LocalOpener{Root: dir}, top, Options{})
		expectErr(t, err, vfs.ErrNotFound, top)
		if !strings.Contains(err.Error(), "gone.vmdk") {
			t.Fatalf("%v does not name the missing parent", err)
		}
	})
	t.Run("MissingExtent", func(t *testing.T) {
		dir, base, top := chainDir(t)
		os.Remove(strings.TrimSuffix(base, ".vmdk") + "-s001.vmdk")
		_, err := Open(ctx, vfs.LocalOpener{Root: dir}, top, Options{})
		expectErr(t, err, vfs.ErrNotFound, "base-s001.vmdk")
	})
	for _, hint := range []string{`C:\VMs\old\base.vmdk`, `\\server\share\base.vmdk`, `/vmfs/volumes/datastore1/vm/base.vmdk`, `sub/base.vmdk`} {
		t.Run("Hint "+hint, func(t *testing.T) {
			dir, _, top := chainDir(t)
			want := qemuRaw(t, top)
			editDescriptor(t, top, setKey("parentFileNameHint", `"`+hint+`"`))
			c, err := Open(ctx, vfs.LocalOpener{Root: dir}, top, Options{})
			if err != nil {
				t.Fatalf("hint %s: %v", hint, err)
			}
			defer c.Close()
			if c.Len() != 2 {
				t.Fatalf("Len() = %d", c.Len())
			}
			vfstest.TestDevice(t, c, want)
		})
	}
	t.Run("NotVMDK", func(t *testing.T) {
		dir := t.TempDir()
		f := filepath.Join(dir, "x.vmdk")
		write(t, f, make([]byte, 2<<20))
		_, err := Open(ctx, vfs.LocalOpener{Root: dir}, f, Options{})
		expectErr(t, err, vfs.ErrCorrupt, f)
	})
	t.Run("ShortFlat", func(t *testing.T) {
		dir := t.TempDir()
		f := filepath.Join(dir, "flat.vmdk")
		run(t, "qemu-img", "create", "-f", "vmdk", "-o", "subformat=monolithicFlat", f, "1M")
		if err := os.Truncate(filepath.Join(dir, "flat-flat.vmdk"), 4096); err != nil {
			t.Fatal(err)
		}
		_, err := Open(ctx, vfs.LocalOpener{Root: dir}, f, Options{})
		expectErr(t, err, vfs.ErrTruncated, "flat-flat.vmdk")
	})
}
