package nbdserve

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/h2kvm/h2kvm/internal/testenv"
	"github.com/h2kvm/h2kvm/vfs"
)

// fileDevice serves a local file as a device whose every byte is data.
type fileDevice struct{ *vfs.File }

func (d fileDevice) Extents(ctx context.Context, off, length int64) ([]vfs.Extent, error) {
	length = min(length, d.Size()-off)
	return []vfs.Extent{{Off: off, Len: length, Kind: vfs.Data}}, nil
}

var _ vfs.Device = fileDevice{}

// BenchmarkNbdcopyVsNbdkit copies a 512 MiB file to null: with nbdcopy, served by nbdserve and
// by `nbdkit file`, and reports both throughputs and their ratio. Run with
//
//	go test -run '^$' -bench NbdcopyVsNbdkit -benchtime 3x ./nbdserve
func BenchmarkNbdcopyVsNbdkit(b *testing.B) {
	testenv.ToolPath(b, "nbdcopy")
	testenv.ToolPath(b, "nbdkit")
	const size = 512 << 20
	path := filepath.Join(b.TempDir(), "disk.raw")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	blk := make([]byte, 1<<20)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range blk {
		blk[i] = byte(r.Uint32())
	}
	for i := 0; i < size/len(blk); i++ {
		blk[0] = byte(i)
		if _, err := f.Write(blk); err != nil {
			b.Fatal(err)
		}
	}
	f.Close()
	src, err := vfs.OpenFile(path)
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	ts := startServer(b, Options{})
	if err := ts.AddExport("disk", fileDevice{src}, ExportOptions{ReadOnly: true}); err != nil {
		b.Fatal(err)
	}
	args := []string{"--connections=4", "--requests=64"}
	var ours, peer time.Duration
	b.SetBytes(size)
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		run(b, 5*time.Minute, "nbdcopy", append(args, ts.uri("disk"), "null:")...)
		ours += time.Since(t0)
		t0 = time.Now()
		run(b, 5*time.Minute, "nbdkit", "-U", "-", "-r", "file", path,
			"--run", "nbdcopy "+args[0]+" "+args[1]+" \"$uri\" null:")
		peer += time.Since(t0)
	}
	mibs := func(d time.Duration) float64 { return float64(b.N) * size / (1 << 20) / d.Seconds() }
	b.ReportMetric(mibs(ours), "nbdserve-MiB/s")
	b.ReportMetric(mibs(peer), "nbdkit-MiB/s")
	b.ReportMetric(peer.Seconds()/ours.Seconds(), "ratio-vs-nbdkit")
}

// BenchmarkReadPath measures the server's READ path (pooled buffers, structured replies) with a
// Go client on a unix socket, without external tools.
func BenchmarkReadPath(b *testing.B) {
	ts := startServer(b, Options{})
	dev := vfs.NewMemDevice(64 << 20)
	fillRandom(b, dev, 0, 64<<20, 1)
	if err := ts.AddExport("m", dev, ExportOptions{ReadOnly: true}); err != nil {
		b.Fatal(err)
	}
	rc := connectRaw(b, ts, "m", true)
	rc.c.SetDeadline(time.Time{})
	const n = 1 << 20
	b.SetBytes(n)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		off := uint64(i%64) << 20
		rc.request(cmdRead, 0, 1, off, n, nil)
		rc.readReply(off, n)
	}
}
