package vsphere

import (
	"strings"
	"testing"
)

// FuzzParseLocation: any string parses or is refused with ErrBadURL without panicking; a parsed
// location carries no password, its String has none either, and String parses back to the
// same location (the formatting round trip).
func FuzzParseLocation(f *testing.F) {
	for _, s := range []string{"vsphere://vc1/DC1/vm", "vsphere://a@vc1:8443/F/DC1/vm/x/web?snapshot=s1", "vsphere://vc1/DC1/vm/vm-42",
		"vsphere://vc1/web", "vsphere://vc1/?moref=vm-7", "vsphere://vc1/DC/vm/a%2Fb", "vsphere://u:p@vc/x", "vsphere://vc/vm/vm/x",
		"vsphere://vc/DC/vm/../../x", "vsphere://vc/DC/vm/web?moref=vm-1&snapshot=a%20b", "vsphere://[::1]:443/DC/vm/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseLocation(s)
		if err != nil {
			return
		}
		if l.Host == "" {
			t.Fatalf("%q: no host", s)
		}
		out := l.String()
		if !strings.HasPrefix(out, "vsphere://") {
			t.Fatalf("%q: String %q", s, out)
		}
		l2, err := ParseLocation(out)
		if err != nil {
			t.Fatalf("%q: String %q does not parse: %v", s, out, err)
		}
		if *l2 != *l {
			t.Fatalf("%q: round trip through %q: %+v, want %+v", s, out, *l2, *l)
		}
	})
}
