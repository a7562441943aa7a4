package fusefs_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/h2kvm/h2kvm/vfs"
	"github.com/h2kvm/h2kvm/vfs/fusefs"
)

// A daemon-style mount: exports come and go while the file system is mounted.
func Example() {
	dir, err := os.MkdirTemp("", "h2kvm-mnt")
	if err != nil {
		log.Fatal(err)
	}
	defer os.Remove(dir)
	f, err := fusefs.Mount(dir, fusefs.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer f.Unmount()

	disk := vfs.NewMemDevice(1 << 20)
	if err := f.Add("vm1-disk0", disk, false); err != nil { // writable: 0644, direct I/O
		log.Fatal(err)
	}
	st, err := os.Stat(dir + "/vm1-disk0/disk.raw")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(st.Size(), st.Mode())

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := f.Remove(ctx, "vm1-disk0"); err != nil { // waits for open files to close
		log.Fatal(err)
	}
}

// The one-shot read-only form behind `h2kvm mount SOURCE MOUNTPOINT`: serve until Ctrl-C.
func ExampleMountReadOnly() {
	var dev vfs.Device = vfs.NewMemDevice(1 << 20) // in h2kvm: the flattened chain
	f, err := fusefs.MountReadOnly("/mnt/evidence", "disk0", dev)
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background()) // cancelled on SIGINT by the CLI
	defer cancel()
	if err := f.Run(ctx); err != nil {
		log.Fatal(err)
	}
}
