// Package vmdktest builds VMDK chains with qemu-img for tests of the layers above package vmdk
// (front ends, daemons), so that they check their bytes against an independent reader.
package vmdktest

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/h2kvm/h2kvm/internal/testenv"
	"github.com/h2kvm/h2kvm/vfs"
	"github.com/h2kvm/h2kvm/vfs/vmdk"
)

// QemuChain builds a two-link chain of monolithicSparse VMDKs with qemu-img and qemu-io (a
// size that is not a whole number of grains, overlapping writes, unwritten grains, written
// zeros), opens it with package vmdk, and returns it with its bytes as qemu-img reads them.
// The chain is closed when the test ends.
func QemuChain(t *testing.T) (*vmdk.Chain, []byte) {
	t.Helper()
	testenv.NeedTool(t, "qemu-img", "qemu-io")
	dir := t.TempDir()
	testenv.Run(t, dir, "qemu-img", "create", "-q", "-f", "vmdk", "-o", "subformat=monolithicSparse", "base.vmdk", "10238k")
	testenv.Run(t, dir, "qemu-io", "-f", "vmdk", "-c", "write -P 0x11 0 1100k", "-c", "write -P 0x12 3m 64k",
		"-c", "write -z 5m 256k", "-c", "write -P 0x13 10176k 62k", "base.vmdk")
	testenv.Run(t, dir, "qemu-img", "create", "-q", "-f", "vmdk", "-b", "base.vmdk", "-F", "vmdk", "top.vmdk")
	testenv.Run(t, dir, "qemu-io", "-f", "vmdk", "-c", "write -P 0x21 1000k 200k", "-c", "write -P 0x22 3100k 5k",
		"-c", "write -z 0 4k", "-c", "write -P 0x23 8m 512", "top.vmdk")
	ref := filepath.Join(dir, "ref.raw")
	testenv.Run(t, dir, "qemu-img", "convert", "-O", "raw", "top.vmdk", ref)
	want, err := os.ReadFile(ref)
	if err != nil {
		t.Fatal(err)
	}
	chain, err := vmdk.Open(context.Background(), vfs.LocalOpener{Root: dir}, filepath.Join(dir, "top.vmdk"), vmdk.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { chain.Close() })
	if chain.Len() != 2 {
		t.Fatalf("chain of %d links, want 2", chain.Len())
	}
	return chain, want
}
