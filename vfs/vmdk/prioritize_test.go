package vmdk

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	"github.com/h2kvm/h2kvm/vfs"
)

// prioOpener opens local files as sources that record the ranges named by Prioritize.
type prioOpener struct {
	vfs.LocalOpener
	mu     sync.Mutex
	ranges map[string][][2]int64 // base name → [off, end)
}

type prioSource struct {
	vfs.Source
	o *prioOpener
}

func (s prioSource) Prioritize(off, length int64) {
	s.o.mu.Lock()
	defer s.o.mu.Unlock()
	n := filepath.Base(s.Name())
	s.o.ranges[n] = append(s.o.ranges[n], [2]int64{off, off + length})
}

func (o *prioOpener) Open(ctx context.Context, name string) (vfs.Source, error) {
	s, err := o.LocalOpener.Open(ctx, name)
	if err != nil {
		return nil, err
	}
	return prioSource{s, o}, nil
}

// covered reports whether [off, end) lies inside the union of rs.
func covered(rs [][2]int64, off, end int64) bool {
	for pos := off; pos < end; {
		next := pos
		for _, r := range rs {
			if r[0] <= pos && r[1] > next {
				next = r[1]
			}
		}
		if next == pos {
			return false
		}
		pos = next
	}
	return true
}

// TestPrioritizeMetadata: opening and reading a chain names each sparse link's header,
// grain directories and grain tables as priority ranges of its source, and no grain data.
func TestPrioritizeMetadata(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base.vmdk")
	const far = 40 << 20 // in the second grain table
	run(t, "qemu-img", "create", "-q", "-f", "vmdk", "-o", "subformat=monolithicSparse", base, "72M")
	qemuIO(t, base, "write -P 0x11 0 1M", "write -P 0x12 40M 1M")
	// A VMware-style stream, whose grain tables lie between the grains.
	raw := make([]byte, 72<<20)
	for i := range 1 << 20 {
		raw[i], raw[far+i] = 0x11, 0x12
	}
	stream := filepath.Join(dir, "stream.vmdk")
	writeVMwareStream(t, stream, raw)

	for _, file := range []string{base, stream} {
		o := &prioOpener{ranges: map[string][][2]int64{}}
		c, err := Open(t.Context(), o, file, Options{})
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 1<<20)
		for _, off := range []int64{0, far} {
			if _, err := c.ReadAt(t.Context(), buf, off); err != nil {
				t.Fatal(err)
			}
		}
		c.Close()
		rs := o.ranges[filepath.Base(file)]
		src, err := o.LocalOpener.Open(t.Context(), file)
		if err != nil {
			t.Fatal(err)
		}
		ext, err := openSparse(t.Context(), src, -1, newMetaBudget(0))
		if err != nil {
			t.Fatal(err)
		}
		h := ext.h
		src.Close()
		if !covered(rs, 0, sectorSize) {
			t.Errorf("%s: header not prioritized: %v", file, rs)
		}
		gdOff, gdLen := int64(h.gdOffset)*sectorSize, int64(h.gdEntries())*4
		if !covered(rs, gdOff, gdOff+gdLen) {
			t.Errorf("%s: grain directory [%d,+%d) not prioritized: %v", file, gdOff, gdLen, rs)
		}
		for _, gdi := range []int{0, int(far / (int64(h.numGTEsPerGT) * int64(h.grainSize) * sectorSize))} {
			gt := int64(ext.gd[gdi]) * sectorSize
			if !covered(rs, gt, gt+int64(h.numGTEsPerGT)*4) {
				t.Errorf("%s: grain table %d at %d not prioritized: %v", file, gdi, gt, rs)
			}
		}
		var prio int64
		for _, r := range rs {
			prio += r[1] - r[0]
		}
		if prio >= 1<<20 {
			t.Errorf("%s: %d bytes prioritized, more than the metadata: %v", file, prio, rs)
		}
	}
}
