package nbdserve

import (
	"context"
	"encoding/binary"
	"sync/atomic"
	"testing"

	"github.com/h2kvm/h2kvm/vfs"
)

// countingDevice counts the bytes its Extents calls are asked about.
type countingDevice struct {
	*vfs.MemDevice
	asked atomic.Int64
}

func (d *countingDevice) Extents(ctx context.Context, off, length int64) ([]vfs.Extent, error) {
	d.asked.Add(length)
	return d.MemDevice.Extents(ctx, off, length)
}

// TestBlockStatusReqOne: with REQ_ONE the reply is one descriptor with the exact length of
// the extent at the offset (clipped to the request), whether that extent is short or spans
// many of the windows the server looks through, and the device is not asked about the whole
// request when the answer is short.
func TestBlockStatusReqOne(t *testing.T) {
	const size = 256 << 20
	ctx := context.Background()
	mem := vfs.NewMemDevice(size)
	fillRandom(t, mem, 0, 4096, 1)
	fillRandom(t, mem, 100<<20, 3<<20, 2)                  // [4K, 100M) hole, [100M, 103M) data
	if err := mem.Zero(ctx, 103<<20, 20<<20); err != nil { // [103M, 123M) zero, then hole
		t.Fatal(err)
	}
	dev := &countingDevice{MemDevice: mem}
	ts := startServer(t, Options{})
	if err := ts.AddExport("m", dev, ExportOptions{ReadOnly: true}); err != nil {
		t.Fatal(err)
	}
	rc := connectRaw(t, ts, "m", true, nameBaseAllocation)
	cases := []struct {
		off, n, wantLen int64
		wantFlags       uint32
	}{
		{0, size, 4096, 0},
		{4096, size - 4096, 100<<20 - 4096, stateHole | stateZero},
		{1 << 20, 5 << 20, 5 << 20, stateHole | stateZero}, // clipped to the request
		{100 << 20, size - 100<<20, 3 << 20, 0},
		{101 << 20, 64 << 10, 64 << 10, 0},
		{103 << 20, size - 103<<20, 20 << 20, stateZero},
		{123 << 20, size - 123<<20, size - 123<<20, stateHole | stateZero},
	}
	for i, c := range cases {
		dev.asked.Store(0)
		rc.request(cmdBlockStatus, cmdFlagReqOne, uint64(i), uint64(c.off), uint32(c.n), nil)
		ch := rc.next(nil)
		if ch.errno != 0 || ch.typ != chunkBlockStatus || ch.flags&replyFlagDone == 0 {
			t.Fatalf("case %d: chunk %+v", i, ch)
		}
		p := ch.payload
		if len(p) != 12 || binary.BigEndian.Uint32(p) != ctxBaseAllocation {
			t.Fatalf("case %d: payload of %d bytes, want one descriptor", i, len(p))
		}
		gotLen, gotFlags := int64(binary.BigEndian.Uint32(p[4:])), binary.BigEndian.Uint32(p[8:])
		if gotLen != c.wantLen || gotFlags != c.wantFlags {
			t.Errorf("case %d: at %d: descriptor %d bytes flags %#x, want %d bytes flags %#x", i, c.off, gotLen, gotFlags, c.wantLen, c.wantFlags)
		}
		if asked := dev.asked.Load(); c.wantLen < 1<<20 && asked > 1<<20 {
			t.Errorf("case %d: a %d-byte answer asked the device about %d bytes", i, c.wantLen, asked)
		}
	}
}
