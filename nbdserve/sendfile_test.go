package nbdserve

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/h2kvm/h2kvm/internal/testenv"
	"github.com/h2kvm/h2kvm/vfs"
)

// mappedDevice is the standard test device whose data also lies in a local file, at a shifted
// offset. MapFile maps the data in 64 KiB blocks of alternating kind: even blocks to the file,
// odd ones not (they go through ReadAt), so replies mix sendfile and memory parts.
type mappedDevice struct {
	*vfs.MemDevice
	f      *os.File
	shift  int64        // device offset off is file offset off+shift
	mapped atomic.Int64 // bytes handed out as file ranges
}

func (d *mappedDevice) MapFile(ctx context.Context, off, length int64) (*os.File, int64, int64, error) {
	const blk = 64 << 10
	m := min(length, (off/blk+1)*blk-off)
	if (off/blk)%2 == 1 {
		return nil, 0, m, nil
	}
	d.mapped.Add(m)
	return d.f, off + d.shift, m, nil
}

var _ vfs.FileMapper = (*mappedDevice)(nil)

func newMappedDevice(t *testing.T) (*mappedDevice, []byte) {
	t.Helper()
	mem := newTestDevice(t)
	want := deviceBytes(t, mem)
	const shift = 12345
	path := filepath.Join(t.TempDir(), "backing")
	if err := os.WriteFile(path, append(make([]byte, shift), want...), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return &mappedDevice{MemDevice: mem, f: f, shift: shift}, want
}

// TestSendfileReads reads a device that maps its data to a file through structured and simple
// replies, at odd offsets and lengths, and checks every byte against the device's ReadAt.
func TestSendfileReads(t *testing.T) {
	dev, want := newMappedDevice(t)
	ts := startServer(t, Options{})
	if err := ts.AddExport("m", dev, ExportOptions{ReadOnly: true}); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(7, 8))
	for _, structured := range []bool{true, false} {
		rc := connectRaw(t, ts, "m", structured)
		cases := [][2]int64{{0, 1 << 20}, {0, testDevSize}, {4<<20 - 100, 200 << 10}, {8<<20 - 4096, 4096}, {1, 1}, {65535, 2}}
		for range 40 {
			off := r.Int64N(testDevSize)
			cases = append(cases, [2]int64{off, 1 + r.Int64N(min(testDevSize-off, 3<<20))})
		}
		for _, c := range cases {
			off, n := c[0], c[1]
			rc.request(cmdRead, 0, 1, uint64(off), uint32(n), nil)
			got, errno := rc.readReply(uint64(off), int(n))
			if errno != 0 {
				t.Fatalf("structured=%v: read %d at %d: errno %d", structured, n, off, errno)
			}
			if !bytes.Equal(got, want[off:off+n]) {
				t.Fatalf("structured=%v: read %d at %d: bytes differ from the device", structured, n, off)
			}
		}
	}
	if dev.mapped.Load() == 0 {
		t.Fatal("no byte was sent from the file: the sendfile path was not taken")
	}
}

// TestSendfileNbdcopy copies the device with nbdcopy (several connections, many requests in
// flight) and compares the result with the device's bytes.
func TestSendfileNbdcopy(t *testing.T) {
	testenv.ToolPath(t, "nbdcopy")
	dev, want := newMappedDevice(t)
	ts := startServer(t, Options{})
	if err := ts.AddExport("m", dev, ExportOptions{ReadOnly: true}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out.raw")
	run(t, time.Minute, "nbdcopy", "--request-size=131072", ts.uri("m"), out)
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("nbdcopy output differs from the device")
	}
	if dev.mapped.Load() == 0 {
		t.Fatal("no byte was sent from the file")
	}
}

// TestSendfileShortFileCutsConnection: a file that ends before the mapped range cannot be
// answered once the header is out; the connection is cut, never left with a short chunk.
func TestSendfileShortFileCutsConnection(t *testing.T) {
	dev, _ := newMappedDevice(t)
	path := filepath.Join(t.TempDir(), "short")
	if err := os.WriteFile(path, make([]byte, 1000), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dev.f, dev.shift = f, 0
	ts := startServer(t, Options{})
	if err := ts.AddExport("m", dev, ExportOptions{ReadOnly: true}); err != nil {
		t.Fatal(err)
	}
	rc := connectRaw(t, ts, "m", true)
	rc.request(cmdRead, 0, 1, 0, 64<<10, nil)
	rc.expectClosed()
}
