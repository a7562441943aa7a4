package tarsrc

import (
	"archive/tar"
	"context"
	"testing"
)

func FuzzWalk(f *testing.F) {
	f.Add(build(f, entry{tar.Header{Name: "vm.ovf"}, []byte("<Envelope/>")}, entry{tar.Header{Name: "d.vmdk"}, pattern(600, 1)}))
	f.Add(build(f, entry{tar.Header{Name: "x", Format: tar.FormatPAX, PAXRecords: map[string]string{"path": "long/päth"}}, []byte("a")}))
	f.Add(build(f, entry{tar.Header{Name: string(make([]byte, 0)) + "averyveryveryveryveryveryveryveryveryveryveryveryveryveryveryveryveryveryveryveryveryveryveryveryverylongname", Format: tar.FormatGNU}, []byte("a")}))
	f.Fuzz(func(t *testing.T, b []byte) {
		src := &memSource{b: b}
		ix, err := Walk(context.Background(), src)
		if err != nil {
			return
		}
		for _, m := range ix.Members {
			if m.Offset < 0 || m.Available > m.Size || m.Offset+m.Available > int64(len(b)) {
				t.Fatalf("member %+v outside a %d-byte archive", m, len(b))
			}
			if _, err := cleanName(m.Name); err != nil {
				t.Fatalf("unsafe name %q indexed", m.Name)
			}
			s := OpenMember(src, m, false)
			p := make([]byte, 64)
			s.ReadAt(context.Background(), p, 0)
			s.ReadAt(context.Background(), p, m.Size-1)
		}
	})
}
