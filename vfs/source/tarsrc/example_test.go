package tarsrc_test

import (
	"archive/tar"
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/h2kvm/h2kvm/vfs"
	"github.com/h2kvm/h2kvm/vfs/source/tarsrc"
)

// A member of a local archive is opened by its location and read in place.
func Example() {
	dir, _ := os.MkdirTemp("", "tarsrc-example")
	defer os.RemoveAll(dir)
	archive := filepath.Join(dir, "vm.ova")
	f, _ := os.Create(archive)
	w := tar.NewWriter(f)
	w.WriteHeader(&tar.Header{Name: "vm.ovf", Mode: 0o644, Size: 11})
	w.Write([]byte("<Envelope/>"))
	w.Close()
	f.Close()

	o := tarsrc.NewOpener(vfs.LocalOpener{})
	loc := tarsrc.Location(archive, "vm.ovf")
	s, err := o.Open(context.Background(), loc)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()
	b := make([]byte, s.Size())
	vfs.ReadFull(context.Background(), s, b, 0)
	_, member, _ := tarsrc.Split(loc)
	fmt.Println(member, s.Size(), string(b))
	// Output: vm.ovf 11 <Envelope/>
}
