package vmdkgen

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"path/filepath"
	"slices"
)

const (
	cowdHeaderSectors = 4
	cowdGTEntries     = 4096

	seGrainSectors = 8
	seGTSectors    = 64
	seGTEntries    = seGTSectors * sector / 8
)

var le = binary.LittleEndian

// WriteCOWDDelta writes NAME.vmdk (createType vmfsSparse) and NAME-delta.vmdk over the parent
// descriptor parentName ("" for none) with 1-sector grains.
func WriteCOWDDelta(dir, name, parentName string, parentCID uint32, virtualSize int64, writes []Write) error {
	_, err := WriteCOWD(dir, Link{Name: name, ParentName: parentName, ParentCID: parentCID, VirtualSize: virtualSize, Writes: writes})
	return err
}

// WriteSESparseDelta writes NAME.vmdk (createType seSparse) and NAME-sesparse.vmdk over the
// parent descriptor parentName ("" for none); zeros are grains marked zero.
func WriteSESparseDelta(dir, name, parentName string, parentCID uint32, virtualSize int64, writes []Write, zeros []Range) error {
	_, err := WriteSESparse(dir, Link{Name: name, ParentName: parentName, ParentCID: parentCID, VirtualSize: virtualSize, Writes: writes, Zeros: zeros})
	return err
}

// WriteCOWD writes a vmfsSparse link: NAME.vmdk and NAME-delta.vmdk in dir.
func WriteCOWD(dir string, l Link) (Files, error) {
	gsec := int64(l.GrainSectors)
	if gsec == 0 {
		gsec = 1
	}
	if gsec > 0x200000 {
		return Files{}, fmt.Errorf("vmdkgen: COWD grain of %d sectors is too large", gsec)
	}
	if len(l.Unmapped) > 0 {
		return Files{}, errors.New("vmdkgen: COWD has no unmapped grains")
	}
	grainSize := gsec * sector
	gs, err := l.grains(grainSize)
	if err != nil {
		return Files{}, err
	}
	numSectors := l.VirtualSize / sector
	if numSectors > 0xffffffff {
		return Files{}, fmt.Errorf("vmdkgen: COWD capacity %d sectors does not fit 32 bits", numSectors)
	}
	numGD := (numSectors + cowdGTEntries*gsec - 1) / (cowdGTEntries * gsec)
	gdSectors := (numGD*4 + sector - 1) / sector

	order := sortedGrains(gs, func(*grain) bool { return true }, l.Reverse)
	// Tables in guest order right after the directory, then grains.
	gtSector := map[int64]int64{}
	next := cowdHeaderSectors + gdSectors
	for _, g := range sortedGrains(gs, func(*grain) bool { return true }, false) {
		if _, ok := gtSector[g/cowdGTEntries]; !ok {
			gtSector[g/cowdGTEntries] = next
			next += cowdGTEntries * 4 / sector
		}
	}
	grainSector := map[int64]int64{}
	for _, g := range order {
		grainSector[g] = next
		next += gsec
	}
	if next > 0xffffffff {
		return Files{}, errors.New("vmdkgen: COWD file would exceed 2 TiB")
	}

	hdr := make([]byte, cowdHeaderSectors*sector)
	copy(hdr, "COWD")
	le.PutUint32(hdr[4:], 1) // version
	le.PutUint32(hdr[8:], 3) // flags, as ESX writes them
	le.PutUint32(hdr[12:], uint32(numSectors))
	le.PutUint32(hdr[16:], uint32(gsec))
	le.PutUint32(hdr[20:], cowdHeaderSectors)
	le.PutUint32(hdr[24:], uint32(numGD))
	le.PutUint32(hdr[28:], uint32(next)) // freeSector
	gd := make([]byte, gdSectors*sector)
	for gdi, s := range gtSector {
		le.PutUint32(gd[gdi*4:], uint32(s))
	}
	gtIdx := sortedKeys(gtSector)
	gts := make([]byte, int64(len(gtIdx))*cowdGTEntries*4)
	for g, s := range grainSector {
		t := (gtSector[g/cowdGTEntries] - cowdHeaderSectors - gdSectors) * sector
		le.PutUint32(gts[t+(g%cowdGTEntries)*4:], uint32(s))
	}

	extent := l.Name + "-delta.vmdk"
	path := filepath.Join(dir, extent)
	fw, err := createFile(path)
	if err != nil {
		return Files{}, err
	}
	fw.at(0, hdr)
	fw.at(cowdHeaderSectors*sector, gd)
	fw.at((cowdHeaderSectors+gdSectors)*sector, gts)
	sum := crc32.NewIEEE()
	for _, g := range order {
		b := grainData(gs, g, grainSize)
		sum.Write(b)
		fw.at(grainSector[g]*sector, b)
	}
	if err := fw.close(next * sector); err != nil {
		return Files{}, err
	}
	cid := l.cid(sum.Sum(nil))
	desc, err := writeDescriptor(dir, &l, l.descriptor(cid, "vmfsSparse", "VMFSSPARSE", extent))
	if err != nil {
		return Files{}, err
	}
	return Files{Descriptor: desc, Extent: path, CID: cid, GrainSize: grainSize}, nil
}

// WriteSESparse writes a seSparse link: NAME.vmdk and NAME-sesparse.vmdk in dir.
func WriteSESparse(dir string, l Link) (Files, error) {
	const grainSize = seGrainSectors * sector
	gs, err := l.grains(grainSize)
	if err != nil {
		return Files{}, err
	}
	capacity := l.VirtualSize / sector
	numGD := (capacity + seGTEntries*seGrainSectors - 1) / (seGTEntries * seGrainSectors)

	// Every marked grain (data, zero, unmapped) needs a table entry.
	tables := map[int64]bool{}
	for g := range gs {
		tables[g/seGTEntries] = true
	}
	tableOrder := sortedKeys(tables)
	if l.Reverse {
		slices.Reverse(tableOrder)
	}
	tableIndex := map[int64]uint64{}
	for i, gdi := range tableOrder {
		tableIndex[gdi] = uint64(i)
	}
	dataOrder := sortedGrains(gs, func(g *grain) bool { return g.kind == kindData }, l.Reverse)

	const (
		volatileOff, volatileSize = 1, 1
		jhOff, jhSize             = 2, 2
		jOff, jSize               = 4, 4
		gdOff                     = 8
	)
	gdSize := (numGD*8 + sector - 1) / sector
	gtOff := gdOff + gdSize
	gtSize := int64(len(tableOrder)) * seGTSectors
	fbOff, fbSize := gtOff+gtSize, int64(1)
	bmOff, bmSize := fbOff+fbSize, int64(1)
	grainsOff := (bmOff + bmSize + seGrainSectors - 1) / seGrainSectors * seGrainSectors
	grainsSize := int64(len(dataOrder)) * seGrainSectors

	hdr := make([]byte, sector)
	for i, v := range []uint64{
		0xcafebabe, 0x0000000200000001, uint64(capacity), seGrainSectors, seGTSectors, 0, 0, 0, 0, 0,
		volatileOff, volatileSize, jhOff, jhSize, jOff, jSize,
		gdOff, uint64(gdSize), uint64(gtOff), uint64(gtSize), uint64(fbOff), uint64(fbSize),
		uint64(bmOff), uint64(bmSize), uint64(grainsOff), uint64(grainsSize),
	} {
		le.PutUint64(hdr[i*8:], v)
	}
	vol := make([]byte, sector)
	le.PutUint64(vol[0:], 0xcafecafe)
	le.PutUint64(vol[8:], uint64(len(tableOrder))) // free_gt_number: the next table to use
	le.PutUint64(vol[16:], 1)                      // next_txn_seq_number
	// replay_journal (offset 24) stays 0: nothing to replay.

	gd := make([]byte, gdSize*sector)
	for gdi, i := range tableIndex {
		le.PutUint64(gd[gdi*8:], 0x1000000000000000|i)
	}
	gts := make([]byte, gtSize*sector)
	entry := func(g int64, v uint64) {
		le.PutUint64(gts[int64(tableIndex[g/seGTEntries])*seGTSectors*sector+(g%seGTEntries)*8:], v)
	}
	for g, gr := range gs {
		switch gr.kind {
		case kindZero:
			entry(g, 0x2000000000000000)
		case kindUnmapped:
			entry(g, 0x1000000000000000)
		}
	}
	for i, g := range dataOrder {
		// The 60-bit grain index is stored rotated: its low 12 bits go to bits 48..59.
		idx := uint64(i)
		entry(g, 0x3000000000000000|(idx&0xfff)<<48|idx>>12)
	}

	extent := l.Name + "-sesparse.vmdk"
	path := filepath.Join(dir, extent)
	fw, err := createFile(path)
	if err != nil {
		return Files{}, err
	}
	fw.at(0, hdr)
	fw.at(volatileOff*sector, vol)
	fw.at(gdOff*sector, gd)
	fw.at(gtOff*sector, gts)
	sum := crc32.NewIEEE()
	for i, g := range dataOrder {
		b := grainData(gs, g, grainSize)
		sum.Write(b)
		fw.at((grainsOff+int64(i)*seGrainSectors)*sector, b)
	}
	if err := fw.close((grainsOff + grainsSize) * sector); err != nil {
		return Files{}, err
	}
	sum.Write(gts)
	cid := l.cid(sum.Sum(nil))
	desc, err := writeDescriptor(dir, &l, l.descriptor(cid, "seSparse", "SESPARSE", extent, `ddb.grain = "8"`))
	if err != nil {
		return Files{}, err
	}
	return Files{Descriptor: desc, Extent: path, CID: cid, GrainSize: grainSize}, nil
}

func sortedKeys[V any](m map[int64]V) []int64 {
	k := make([]int64, 0, len(m))
	for i := range m {
		k = append(k, i)
	}
	slices.Sort(k)
	return k
}
