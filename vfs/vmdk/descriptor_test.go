package vmdk

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/japanese"

	"github.com/h2kvm/h2kvm/vfs"
	"github.com/h2kvm/h2kvm/vfs/vfstest"
)

const sampleDescriptor = "# Disk DescriptorFile\r\nversion=1 \r\nencoding=\"UTF-8\"\r\nCID=fffffffe\r\nparentCID=1a2b3c4d  \r\n" +
	"isNativeSnapshot=\"no\"\r\ncreateType=\"twoGbMaxExtentFlat\"\r\nparentFileNameHint=\"My Base Disk.vmdk\"\r\n\r\n" +
	"# Extent description\r\nRW 4192256 FLAT \"My Disk-f001.vmdk\" 0\r\nRDONLY 100 FLAT \"My Disk-f002.vmdk\" 8 part dev\r\n" +
	"NOACCESS 64 ZERO\r\nrw 2048 VMFS \"vmfs file.vmdk\"\r\n\r\n# The Disk Data Base \r\n#DDB\r\n\r\n" +
	"ddb.virtualHWVersion = \"14\"\r\nddb.uuid = \"60 00 C2 9a 2b 36 5b 4c-63 fd 9e 3f 0c 0b 12 58\"\r\n" +
	"ddb.geometry.cylinders = \"261\"\r\nddb.geometry.heads = \"255\"\r\nddb.geometry.sectors = \"63\"\r\nddb.adapterType = \"lsilogic\"\r\n"

func TestParseDescriptor(t *testing.T) {
	d, err := ParseDescriptor([]byte(sampleDescriptor))
	if err != nil {
		t.Fatal(err)
	}
	if d.Version != 1 || d.CID != 0xfffffffe || d.ParentCID != 0x1a2b3c4d || d.CreateType != "twoGbMaxExtentFlat" ||
		d.ParentFileNameHint != "My Base Disk.vmdk" || d.Get("adapterType") != "lsilogic" || d.Get("ddb.VIRTUALHWVERSION") != "14" ||
		!strings.HasPrefix(d.Get("uuid"), "60 00 C2") || d.Header["isnativesnapshot"] != "no" {
		t.Fatalf("header: %+v", d)
	}
	want := []ExtentLine{
		{Access: AccessRW, Sectors: 4192256, Type: "FLAT", File: "My Disk-f001.vmdk"},
		{Access: AccessRDONLY, Sectors: 100, Type: "FLAT", File: "My Disk-f002.vmdk", Offset: 8, Extra: []string{"part", "dev"}},
		{Access: AccessNOACCESS, Sectors: 64, Type: "ZERO"},
		{Access: AccessRW, Sectors: 2048, Type: "VMFS", File: "vmfs file.vmdk"},
	}
	if len(d.Extents) != len(want) {
		t.Fatalf("extents: %+v", d.Extents)
	}
	for i := range want {
		g, w := d.Extents[i], want[i]
		if g.Access != w.Access || g.Sectors != w.Sectors || g.Type != w.Type || g.File != w.File || g.Offset != w.Offset || len(g.Extra) != len(w.Extra) {
			t.Errorf("extent %d: %+v, want %+v", i, g, w)
		}
	}
	if d.Sectors() != 4192256+100+64+2048 {
		t.Errorf("Sectors() = %d", d.Sectors())
	}
}

func TestParseDescriptorErrors(t *testing.T) {
	for name, text := range map[string]string{
		"no version":      "CID=12345678\nRW 10 FLAT \"a\" 0\n",
		"version 4":       "version=4\nRW 10 FLAT \"a\" 0\n",
		"garbage":         "version=1\nthis is not a descriptor line\n",
		"unquoted name":   "version=1\nRW 10 FLAT a.vmdk 0\n",
		"unterminated":    "version=1\nRW 10 FLAT \"a.vmdk 0\n",
		"bad size":        "version=1\nRW -5 FLAT \"a\" 0\n",
		"huge size":       "version=1\nRW 999999999999999999 FLAT \"a\" 0\n",
		"huge total":      "version=1\nRW 100000000000 FLAT \"a\" 0\nRW 100000000000 FLAT \"b\" 0\n",
		"unknown type":    "version=1\nRW 10 WEIRD \"a\"\n",
		"offset on VMFS":  "version=1\nRW 10 VMFS \"a\" 5\n",
		"zero with file":  "version=1\nRW 10 ZERO \"a\"\n",
		"sparse no file":  "version=1\nRW 10 SPARSE\n",
		"bad CID":         "version=1\nCID=xyz\n",
		"bad encoding":    "version=1\nencoding=\"EBCDIC\"\n",
		"invalid utf8":    "version=1\nRW 10 FLAT \"\xff\xfe\" 0\n",
		"bad offset":      "version=1\nRW 10 FLAT \"a\" x\n",
		"missing type":    "version=1\nRW 10\n",
		"key with spaces": "version=1\nsome key=1\n",
	} {
		if _, err := ParseDescriptor([]byte(text)); err == nil {
			t.Errorf("%s: parsed", name)
		} else if !errors.Is(err, vfs.ErrCorrupt) && !errors.Is(err, vfs.ErrUnsupported) {
			t.Errorf("%s: %v is neither ErrCorrupt nor ErrUnsupported", name, err)
		}
	}
}

// TestEncodings writes descriptors in legacy code pages naming flat files whose names are not
// ASCII, and reads the disk through them.
func TestEncodings(t *testing.T) {
	for _, tc := range []struct {
		enc, file string
		encode    func([]byte) ([]byte, error)
	}{
		{"windows-1252", "disque-é-flat.vmdk", charmap.Windows1252.NewEncoder().Bytes},
		{"Shift_JIS", "ディスク-flat.vmdk", japanese.ShiftJIS.NewEncoder().Bytes},
		{"UTF-8", "диск-flat.vmdk", func(b []byte) ([]byte, error) { return b, nil }},
	} {
		t.Run(tc.enc, func(t *testing.T) {
			dir := t.TempDir()
			data := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
			if err := os.WriteFile(filepath.Join(dir, tc.file), data, 0o644); err != nil {
				t.Fatal(err)
			}
			desc := "# Disk DescriptorFile\nversion=1\nencoding=\"" + tc.enc + "\"\nCID=11111111\nparentCID=ffffffff\n" +
				"createType=\"monolithicFlat\"\n\nRW 128 FLAT \"" + tc.file + "\" 0\n\nddb.adapterType = \"ide\"\n"
			b, err := tc.encode([]byte(desc))
			if err != nil {
				t.Fatal(err)
			}
			if tc.enc != "UTF-8" && bytes.Contains(b, []byte(tc.file)) {
				t.Fatal("encoding left the name as UTF-8")
			}
			if err := os.WriteFile(filepath.Join(dir, "d.vmdk"), b, 0o644); err != nil {
				t.Fatal(err)
			}
			c := openChain(t, dir, "d.vmdk", Options{})
			vfstest.TestDevice(t, c, data)
			info, err := c.Info(context.Background())
			if err != nil || info.Links[0].Encoding != tc.enc || filepath.Base(info.Links[0].Extents[0].File) != tc.file {
				t.Fatalf("Info: %+v, %v", info, err)
			}
		})
	}
}

// TestExtentKinds mixes FLAT with an offset, ZERO, NOACCESS and a file name with spaces in one
// link.
func TestExtentKinds(t *testing.T) {
	dir := t.TempDir()
	flat := make([]byte, 8192+65536)
	for i := range flat {
		flat[i] = byte(i/512) + 1
	}
	if err := os.WriteFile(filepath.Join(dir, "a file.bin"), flat, 0o644); err != nil {
		t.Fatal(err)
	}
	desc := "version=1\nCID=1\nparentCID=ffffffff\ncreateType=\"custom\"\n" +
		"RW 64 FLAT \"a file.bin\" 16\nRW 32 ZERO\nNOACCESS 16 FLAT \"does not exist\" 0\nRDONLY 8 FLAT \"a file.bin\" 0\n"
	if err := os.WriteFile(filepath.Join(dir, "d.vmdk"), []byte(desc), 0o644); err != nil {
		t.Fatal(err)
	}
	want := make([]byte, (64+32+16+8)*512)
	copy(want, flat[16*512:80*512])
	copy(want[(64+32+16)*512:], flat[:8*512])
	c := openChain(t, dir, "d.vmdk", Options{})
	vfstest.TestDevice(t, c, want)
	m, err := c.Extents(context.Background(), 0, c.Size())
	if err != nil || len(m) != 3 || m[0].Kind != vfs.Data || m[1].Kind != vfs.Zero || m[1].Len != 48*512 || m[2].Kind != vfs.Data {
		t.Fatalf("Extents: %+v, %v", m, err)
	}
}
