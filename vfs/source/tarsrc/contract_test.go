package tarsrc

import (
	"archive/tar"
	"os"
	"path/filepath"
	"testing"

	"github.com/h2kvm/h2kvm/vfs"
	"github.com/h2kvm/h2kvm/vfs/source/sourcetest"
)

// A member of a local OVA, between two other members so that its bytes lie inside the archive.
func TestContract(t *testing.T) {
	sourcetest.Run(t, func(t *testing.T, content []byte) sourcetest.Fixture {
		dir := t.TempDir()
		ova := build(t,
			entry{hdr: tar.Header{Name: "vm.ovf"}, data: []byte("<Envelope/>")},
			entry{hdr: tar.Header{Name: "vm/disk.bin"}, data: content},
			entry{hdr: tar.Header{Name: "vm/other.bin"}, data: pattern(1000, 3)})
		p := filepath.Join(dir, "vm.ova")
		if err := os.WriteFile(p, ova, 0o600); err != nil {
			t.Fatal(err)
		}
		return sourcetest.Fixture{Opener: NewOpener(vfs.LocalOpener{Root: dir}), Name: Location(p, "vm/disk.bin"),
			Self: "disk.bin", Missing: "missing.bin"}
	})
}
