package tarsrc

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/h2kvm/h2kvm/internal/testenv"
	"github.com/h2kvm/h2kvm/vfs"
)

// memSource is an in-memory archive that counts the bytes read from it.
type memSource struct {
	b    []byte
	read int64
}

func (m *memSource) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if off >= int64(len(m.b)) {
		return 0, io.EOF
	}
	n := copy(p, m.b[off:])
	m.read += int64(n)
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
func (m *memSource) Size() int64  { return int64(len(m.b)) }
func (m *memSource) Name() string { return "mem.ova" }
func (m *memSource) Close() error { return nil }

type entry struct {
	hdr  tar.Header
	data []byte
}

func build(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.data))
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if err := w.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(e.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) ^ seed
	}
	return b
}

func TestMembersReadInPlace(t *testing.T) {
	long := strings.Repeat("long-directory-name/", 8) + "disk.vmdk"
	files := map[string][]byte{
		"vm.ovf":           pattern(700, 1),
		"vm.mf":            pattern(0, 2),
		"disk.vmdk":        pattern(3<<20+5, 3),
		long:               pattern(1000, 4),
		"päx-ünïcode.vmdk": pattern(513, 5),
	}
	arc := build(t,
		entry{tar.Header{Name: "vm.ovf", Format: tar.FormatUSTAR}, files["vm.ovf"]},
		entry{tar.Header{Name: "vm.mf", Format: tar.FormatUSTAR}, files["vm.mf"]},
		entry{tar.Header{Name: "sub/", Typeflag: tar.TypeDir}, nil},
		entry{tar.Header{Name: "disk.vmdk", Format: tar.FormatGNU}, files["disk.vmdk"]},
		entry{tar.Header{Name: long, Format: tar.FormatGNU}, files[long]},
		entry{tar.Header{Name: "päx-ünïcode.vmdk", Format: tar.FormatPAX}, files["päx-ünïcode.vmdk"]},
	)
	src := &memSource{b: arc}
	ctx := context.Background()
	ix, err := Walk(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(ix.Members); got != len(files) {
		t.Fatalf("members %v, want %d", ix.Names(), len(files))
	}
	if src.read > int64(len(ix.Members)+4)*2*blockSize+2000 {
		t.Fatalf("Walk read %d bytes of a %d-byte archive: it must read headers only", src.read, len(arc))
	}
	for name, want := range files {
		m, ok := ix.Lookup(name)
		if !ok {
			t.Fatalf("no member %q in %v", name, ix.Names())
		}
		s := OpenMember(src, m, false)
		if s.Size() != int64(len(want)) {
			t.Fatalf("%s: size %d want %d", name, s.Size(), len(want))
		}
		got := make([]byte, len(want))
		// read in odd-sized pieces, backwards, to exercise random access
		for off := int64(len(want)); off > 0; {
			n := min(off, 4099)
			off -= n
			if err := vfs.ReadFull(ctx, s, got[off:off+n], off); err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: bytes differ", name)
		}
		if n, err := s.ReadAt(ctx, make([]byte, 10), s.Size()-3); s.Size() >= 3 && (n != 3 || err != io.EOF) {
			t.Fatalf("%s: read across the end: n=%d err=%v", name, n, err)
		}
		sum, err := Digest(ctx, s, sha256.New())
		if err != nil {
			t.Fatal(err)
		}
		if w := sha256.Sum256(want); !bytes.Equal(sum, w[:]) {
			t.Fatalf("%s: digest differs", name)
		}
	}
}

func TestAgainstSystemTar(t *testing.T) {
	tarBin := testenv.ToolPath(t, "tar")
	dir := t.TempDir()
	in := filepath.Join(dir, "in")
	long := filepath.Join(in, strings.Repeat("d", 120), strings.Repeat("f", 150)+".vmdk")
	if err := os.MkdirAll(filepath.Dir(long), 0o755); err != nil {
		t.Fatal(err)
	}
	want := pattern(70000, 9)
	if err := os.WriteFile(long, want, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, format := range []string{"gnu", "posix"} {
		arc := filepath.Join(dir, format+".tar")
		run(t, tarBin, "-C", in, "--format="+format, "-cf", arc, ".")
		o := NewOpener(vfs.LocalOpener{})
		rel := strings.TrimPrefix(long, in+"/")
		s, err := o.Open(context.Background(), Location(arc, rel))
		if err != nil {
			t.Fatalf("%s: %v", format, err)
		}
		got := make([]byte, s.Size())
		if err := vfs.ReadFull(context.Background(), s, got, 0); err != nil {
			t.Fatal(err)
		}
		s.Close()
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: member bytes differ from the file tar packed", format)
		}
	}
}

func TestUnsafeMembersRefused(t *testing.T) {
	cases := map[string][]entry{
		"dotdot":    {{tar.Header{Name: "../x"}, []byte("x")}},
		"inner":     {{tar.Header{Name: "a/../../x"}, []byte("x")}},
		"absolute":  {{tar.Header{Name: "/etc/x"}, []byte("x")}},
		"backslash": {{tar.Header{Name: "..\\x"}, []byte("x")}},
		"symlink":   {{tar.Header{Name: "disk.vmdk", Typeflag: tar.TypeSymlink, Linkname: "/etc/shadow"}, nil}},
		"hardlink":  {{tar.Header{Name: "a"}, []byte("a")}, {tar.Header{Name: "disk.vmdk", Typeflag: tar.TypeLink, Linkname: "a"}, nil}},
		"device":    {{tar.Header{Name: "sda", Typeflag: tar.TypeBlock, Devmajor: 8}, nil}},
		"fifo":      {{tar.Header{Name: "p", Typeflag: tar.TypeFifo}, nil}},
		"duplicate": {{tar.Header{Name: "vm.ovf"}, []byte("a")}, {tar.Header{Name: "./vm.ovf"}, []byte("b")}},
		"paxpath":   {{tar.Header{Name: strings.Repeat("a/", 60) + strings.Repeat("../", 62) + "evil", Format: tar.FormatPAX}, []byte("x")}},
		"gnulong":   {{tar.Header{Name: strings.Repeat("a/", 60) + strings.Repeat("../", 62) + "evil", Format: tar.FormatGNU}, []byte("x")}},
	}
	for name, es := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Walk(context.Background(), &memSource{b: build(t, es...)})
			if !errors.Is(err, ErrUnsafeMember) {
				t.Fatalf("got %v, want ErrUnsafeMember", err)
			}
			t.Log(err)
		})
	}
}

func TestTruncatedArchive(t *testing.T) {
	data := pattern(100000, 7)
	arc := build(t, entry{tar.Header{Name: "vm.ovf"}, []byte("<x/>")}, entry{tar.Header{Name: "disk.vmdk"}, data})
	cut := arc[:1536+50000]
	src := &memSource{b: cut}
	ix, err := Walk(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := ix.Lookup("disk.vmdk")
	if !m.Truncated() || m.Available != 50000 {
		t.Fatalf("member %+v: want truncated with 50000 bytes available", m)
	}
	s := OpenMember(src, m, false)
	p := make([]byte, 1000)
	if err := vfs.ReadFull(context.Background(), s, p, 1000); err != nil || !bytes.Equal(p, data[1000:2000]) {
		t.Fatalf("read before the cut: %v", err)
	}
	_, err = s.ReadAt(context.Background(), p, 49500)
	if !errors.Is(err, vfs.ErrTruncated) || !strings.Contains(err.Error(), "disk.vmdk") {
		t.Fatalf("read across the cut: %v", err)
	}
	// A cut inside a header is an error.
	if _, err := Walk(context.Background(), &memSource{b: arc[:1024+100]}); !errors.Is(err, vfs.ErrTruncated) {
		t.Fatalf("cut header: %v", err)
	}
}

func TestCorruptHeader(t *testing.T) {
	arc := build(t, entry{tar.Header{Name: "vm.ovf"}, []byte("hello")})
	arc[10] ^= 0xff
	if _, err := Walk(context.Background(), &memSource{b: arc}); !errors.Is(err, vfs.ErrCorrupt) {
		t.Fatalf("got %v, want ErrCorrupt", err)
	}
	if _, err := Walk(context.Background(), &memSource{b: []byte("not a tar at all")}); err == nil {
		t.Fatal("garbage accepted")
	}
}

func TestLocationAndResolve(t *testing.T) {
	loc := Location("https://h/folder/x.ova?dcPath=DC&dsName=ds", "dir/a #b.vmdk")
	a, m, err := Split(loc)
	if err != nil || a != "https://h/folder/x.ova?dcPath=DC&dsName=ds" || m != "dir/a #b.vmdk" {
		t.Fatalf("Split(%q) = %q %q %v", loc, a, m, err)
	}
	o := NewOpener(vfs.LocalOpener{})
	r, err := o.Resolve(loc, "c-flat.vmdk")
	if err != nil || r != Location(a, "dir/c-flat.vmdk") {
		t.Fatalf("Resolve = %q %v", r, err)
	}
	for _, bad := range []string{"../../x", "/etc/passwd", "..\\x", "C:\\x"} {
		if _, err := o.Resolve(loc, bad); !errors.Is(err, vfs.ErrChain) {
			t.Fatalf("Resolve(%q) = %v, want ErrChain", bad, err)
		}
	}
	for _, bad := range []string{"/x.ova#a", "ova:x.ova", "ova:#a", "ova:x#"} {
		if _, _, err := Split(bad); err == nil {
			t.Fatalf("Split(%q) accepted", bad)
		}
	}
}

func TestOpenerMissingMember(t *testing.T) {
	dir := t.TempDir()
	arc := filepath.Join(dir, "x.ova")
	os.WriteFile(arc, build(t, entry{tar.Header{Name: "vm.ovf"}, []byte("x")}), 0o644)
	_, err := NewOpener(vfs.LocalOpener{}).Open(context.Background(), Location(arc, "disk.vmdk"))
	if !errors.Is(err, vfs.ErrNotFound) || !strings.Contains(err.Error(), "vm.ovf") {
		t.Fatalf("got %v", err)
	}
}
