package all

import (
	"strings"
	"testing"
)

func TestLookup(t *testing.T) {
	for _, name := range []string{"", "libvirt"} {
		tg, err := Lookup(name)
		if err != nil || tg.Name() != "libvirt" {
			t.Errorf("Lookup(%q) = %v, %v", name, tg, err)
		}
	}
	_, err := Lookup("vmware")
	if err == nil || !strings.Contains(err.Error(), `"vmware"`) || !strings.Contains(err.Error(), "known: libvirt") {
		t.Errorf("Lookup(unknown) error = %v", err)
	}
}

func TestNamesUnique(t *testing.T) {
	seen := map[string]bool{}
	for _, n := range Names() {
		if n == "" || seen[n] {
			t.Errorf("target name %q empty or listed twice", n)
		}
		seen[n] = true
	}
	if len(seen) == 0 || Names()[0] != Default {
		t.Errorf("Names() = %v, want %s first", Names(), Default)
	}
}
