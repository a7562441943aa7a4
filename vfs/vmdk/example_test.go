package vmdk_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/h2kvm/h2kvm/vfs"
	"github.com/h2kvm/h2kvm/vfs/vmdk"
)

// tinyDelta builds a hosted sparse (KDMV) delta of 2 sectors with 1-sector grains in which only
// sector 0 is allocated, holding data. Real deltas come from VMware or qemu-img.
func tinyDelta(data string) []byte {
	const gd, gt, grain = 1, 2, 6 // sectors of the grain directory, grain table, grain
	b := make([]byte, (grain+1)*512)
	le := binary.LittleEndian
	copy(b, "KDMV")
	le.PutUint32(b[4:], 1)    // version
	le.PutUint64(b[12:], 2)   // capacity, sectors
	le.PutUint64(b[20:], 1)   // grain size, sectors
	le.PutUint32(b[44:], 512) // entries per grain table
	le.PutUint64(b[56:], gd)  // grain directory
	le.PutUint64(b[64:], 6)   // overhead: grains start here
	le.PutUint32(b[gd*512:], gt)
	le.PutUint32(b[gt*512:], grain) // grain 0 → sector 6; grain 1 unallocated
	copy(b[grain*512:], data)
	return b
}

// ExampleOpen opens a two-link chain, a flat base and a sparse delta, and reads the flattened
// disk: sector 0 comes from the delta, sector 1 falls through to the base.
func ExampleOpen() {
	dir, err := os.MkdirTemp("", "vmdk-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	write := func(name string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			log.Fatal(err)
		}
	}
	base := make([]byte, 1024)
	copy(base, "base sector 0")
	copy(base[512:], "base sector 1")
	write("base-flat.vmdk", base)
	write("base.vmdk", []byte(`# Disk DescriptorFile
version=1
CID=0000000a
parentCID=ffffffff
createType="monolithicFlat"
RW 2 FLAT "base-flat.vmdk" 0
ddb.adapterType = "lsilogic"
`))
	write("top-delta.vmdk", tinyDelta("top sector 0!"))
	write("top.vmdk", []byte(`# Disk DescriptorFile
version=1
CID=0000000b
parentCID=0000000a
createType="monolithicSparse"
parentFileNameHint="base.vmdk"
RW 2 SPARSE "top-delta.vmdk"
`))

	ctx := context.Background()
	chain, err := vmdk.Open(ctx, vfs.LocalOpener{Root: dir}, filepath.Join(dir, "top.vmdk"), vmdk.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer chain.Close()

	p := make([]byte, 1024)
	if _, err := chain.ReadAt(ctx, p, 0); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d links, %d bytes: %q, %q\n", chain.Len(), chain.Size(), p[:13], p[512:525])
	ext, err := chain.Extents(ctx, 0, chain.Size())
	if err != nil {
		log.Fatal(err)
	}
	for _, e := range ext {
		fmt.Printf("%d+%d %v from link %d\n", e.Off, e.Len, e.Kind, e.Depth)
	}
	// Output:
	// 2 links, 1024 bytes: "top sector 0!", "base sector 1"
	// 0+512 data from link 0
	// 512+512 data from link 1
}
