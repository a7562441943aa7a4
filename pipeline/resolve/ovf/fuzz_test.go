package ovf

import (
	"bytes"
	"os"
	"testing"
)

func FuzzParse(f *testing.F) {
	full, err := os.ReadFile("testdata/full.ovf")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(full)
	f.Add([]byte(`<Envelope><VirtualSystem><VirtualHardwareSection/></VirtualSystem></Envelope>`))
	f.Fuzz(func(t *testing.T, b []byte) {
		env, err := Parse(bytes.NewReader(b), "fuzz.ovf")
		if err != nil {
			return
		}
		for _, d := range env.System.Disks {
			if d.File != nil {
				if _, err := cleanHref(d.File.Href); err != nil {
					t.Fatalf("unsafe href %q accepted", d.File.Href)
				}
			}
			if d.Capacity < 0 {
				t.Fatalf("negative capacity")
			}
		}
	})
}

func FuzzParseManifest(f *testing.F) {
	f.Add([]byte("SHA256(vm.ovf)= 2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824\n"))
	f.Add([]byte("SHA1(a)= 0123456789abcdef0123456789abcdef01234567\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseManifest(bytes.NewReader(b), "fuzz.mf")
		if err != nil {
			return
		}
		for name, d := range m {
			if NewHash(d.Alg) == nil || len(d.Sum) != NewHash(d.Alg).Size() || name == "" {
				t.Fatalf("bad entry %q %+v", name, d)
			}
		}
	})
}
