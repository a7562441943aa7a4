package source_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/h2kvm/h2kvm/vfs/source"
)

// Open a location, then the extent its descriptor names, through the same Opener.
func ExampleOpen() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	os.WriteFile(filepath.Join(dir, "disk.vmdk"), []byte("# Disk DescriptorFile"), 0o600)
	os.WriteFile(filepath.Join(dir, "disk-flat.vmdk"), make([]byte, 4096), 0o600)

	cfg, _ := source.ConfigFromEnv()
	ctx := context.Background()
	o, first, err := source.Open(ctx, filepath.Join(dir, "disk.vmdk"), cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer o.Close()
	extent, _ := o.Resolve(first, "disk-flat.vmdk")
	s, err := o.Open(ctx, extent)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()
	fmt.Println(filepath.Base(s.Name()), s.Size())
	// Output: disk-flat.vmdk 4096
}
