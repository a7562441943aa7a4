package vsphere

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/h2kvm/h2kvm/vfs/source/datastore"
	"github.com/h2kvm/h2kvm/vfs/source/httpsrc"
	"github.com/h2kvm/h2kvm/vfs/vmdk"
)

// TestResolvedDiskReadsThroughDatastore hands the resolved /folder URL to the block layer
// (datastore opener + vmdk chain) and compares every byte with qemu-img's reading of the local
// chain.
func TestResolvedDiskReadsThroughDatastore(t *testing.T) {
	s := startSim(t)
	ctx := context.Background()
	vm, err := Resolve(ctx, s.loc("/DC0/vm/"+vmName), s.opts())
	if err != nil {
		t.Fatal(err)
	}
	src := vm.Disks[0].Source
	o, err := datastore.NewOpener(ctx, src, datastore.Options{Password: testPass, KeepAlive: -1,
		HTTP: httpsrc.Options{TLS: httpsrc.TLSOptions{Thumbprints: []string{s.thumb}}}})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	readDisk(t, s, o, src)
}

// readDisk reads the resolved disk src (the delta over its base) through the vmdk chain over
// o and compares every byte with qemu-img's reading of the local chain.
func readDisk(t *testing.T, s *sim, o *datastore.Opener, src string) {
	t.Helper()
	ctx := context.Background()
	c, err := vmdk.Open(ctx, o, src, vmdk.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Len() != 2 {
		t.Fatalf("chain of %d links, want delta + base", c.Len())
	}
	got := make([]byte, c.Size())
	if _, err := c.ReadAt(ctx, got, 0); err != nil {
		t.Fatal(err)
	}
	ref := filepath.Join(t.TempDir(), "ref.raw")
	if out, err := exec.Command("qemu-img", "convert", "-O", "raw", filepath.Join(s.dsDir, "h2kvm", "delta.vmdk"), ref).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v %s", err, out)
	}
	want, err := os.ReadFile(ref)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("bytes read through the resolved datastore URL differ from qemu-img convert -O raw")
	}
}
