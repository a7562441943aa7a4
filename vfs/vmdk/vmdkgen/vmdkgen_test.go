package vmdkgen

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLinkFiles(t *testing.T) {
	dir := t.TempDir()
	parent := bytes.Repeat([]byte{0xaa}, 1<<20)
	l := Link{Name: "d", ParentName: "p.vmdk", ParentCID: 0x1234abcd, VirtualSize: 1 << 20,
		Writes: []Write{{Off: 100, Data: []byte("hi")}}, Zeros: []Range{{Off: 8192, Len: 1}},
		Parent: bytes.NewReader(parent)}
	for _, w := range []func(string, Link) (Files, error){WriteCOWD, WriteSESparse} {
		f, err := w(dir, l)
		if err != nil {
			t.Fatal(err)
		}
		cid, err := ReadCID(f.Descriptor)
		if err != nil || cid != f.CID {
			t.Fatalf("ReadCID = %x, %v; wrote %x", cid, err, f.CID)
		}
		desc, _ := os.ReadFile(f.Descriptor)
		for _, s := range []string{"parentCID=1234abcd\n", `parentFileNameHint="p.vmdk"`, "RW 2048 ", `"` + filepath.Base(f.Extent) + `"`} {
			if !strings.Contains(string(desc), s) {
				t.Fatalf("descriptor lacks %q:\n%s", s, desc)
			}
		}
		want, err := l.Expected(parent, f.GrainSize)
		if err != nil {
			t.Fatal(err)
		}
		// The written grain keeps the parent's bytes around the write (copy-on-write); the
		// zero grain hides the parent; the rest is the parent.
		if want[99] != 0xaa || string(want[100:102]) != "hi" || want[102] != 0xaa || want[8192] != 0 || want[8192+int(f.GrainSize)] != 0xaa {
			t.Fatalf("Expected is wrong around the write or the zero grain (grain %d)", f.GrainSize)
		}
	}
}

func TestLinkRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	for _, l := range []Link{
		{Name: "a", VirtualSize: 1000},
		{Name: "a", VirtualSize: 0},
		{Name: "a/b", VirtualSize: 512},
		{Name: "a", VirtualSize: 512, Writes: []Write{{Off: 510, Data: []byte("xyz")}}},
		{Name: "a", VirtualSize: 512, Zeros: []Range{{Off: -1, Len: 2}}},
	} {
		if _, err := WriteSESparse(dir, l); err == nil {
			t.Errorf("WriteSESparse accepted %+v", l)
		}
	}
	if _, err := WriteCOWD(dir, Link{Name: "a", VirtualSize: 512, Unmapped: []Range{{Off: 0, Len: 1}}}); err == nil {
		t.Error("WriteCOWD accepted unmapped grains")
	}
}

// A seSparse snapshot of base.vmdk that changes the first 4 KiB and zeroes the next grain.
func ExampleWriteSESparse() {
	dir, err := os.MkdirTemp("", "vmdkgen")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	f, err := WriteSESparse(dir, Link{
		Name: "vm-000001", ParentName: "base.vmdk", ParentCID: 0x5e3c1a2b, VirtualSize: 64 << 20,
		Writes: []Write{{Off: 0, Data: bytes.Repeat([]byte{0xee}, 4096)}},
		Zeros:  []Range{{Off: 4096, Len: 4096}},
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(filepath.Base(f.Descriptor), filepath.Base(f.Extent), f.GrainSize)
	// Output: vm-000001.vmdk vm-000001-sesparse.vmdk 4096
}
