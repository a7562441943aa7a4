package nbdserve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"testing"

	"github.com/h2kvm/h2kvm/internal/libnbd"
	"github.com/h2kvm/h2kvm/internal/testenv"
	"github.com/h2kvm/h2kvm/vfs"
	"github.com/h2kvm/h2kvm/vfs/vfstest"
	"github.com/h2kvm/h2kvm/vfs/vmdk/vmdktest"
)

// nbdDevice is a vfs.Device read back through libnbd, so that the device contract suite checks
// what an NBD client sees of an export: bytes from NBD_CMD_READ (structured replies, holes
// included) and extents from NBD_CMD_BLOCK_STATUS in the base:allocation context. What the
// protocol cannot carry is decided here, not by the server: base:allocation has no chain depth
// (every extent has Depth 0, which the suite accepts as long as answers agree with each other),
// reads past the end are clipped with io.EOF because NBD refuses them, and a cancelled
// context is checked before each command. A HOLE descriptor without ZERO (unallocated but not
// known to read as zeros) is reported as Data.
type nbdDevice struct {
	uri  string
	size int64
	// handles is a pool: a libnbd handle has one command in flight, and the suite reads from
	// eight goroutines at once, which the server must serve over several connections.
	handles chan *libnbd.Handle
}

var _ vfs.Device = (*nbdDevice)(nil)

const nbdConns = 4

func newNBDDevice(t *testing.T, uri string) *nbdDevice {
	t.Helper()
	d := &nbdDevice{uri: uri, handles: make(chan *libnbd.Handle, nbdConns)}
	for range nbdConns {
		h, err := d.connect(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		d.handles <- h
	}
	t.Cleanup(func() {
		for range nbdConns {
			h := <-d.handles
			h.Shutdown()
			h.Close()
		}
	})
	return d
}

func (d *nbdDevice) connect(ctx context.Context) (*libnbd.Handle, error) {
	h, err := libnbd.Create()
	if err != nil {
		return nil, err
	}
	if err := h.AddMetaContext(libnbd.MetaContextBaseAllocation); err != nil {
		h.Close()
		return nil, err
	}
	if err := h.ConnectURI(ctx, d.uri); err != nil {
		h.Close()
		return nil, err
	}
	if ok, err := h.CanMetaContext(libnbd.MetaContextBaseAllocation); err != nil || !ok {
		h.Close()
		return nil, fmt.Errorf("%s: base:allocation not negotiated: %v", d.uri, err)
	}
	size, err := h.Size()
	if err != nil {
		h.Close()
		return nil, err
	}
	d.size = size
	return h, nil
}

// do runs fn on a pooled handle, replacing the handle if fn left it dead.
func (d *nbdDevice) do(ctx context.Context, fn func(h *libnbd.Handle) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	h := <-d.handles
	err := fn(h)
	if !h.Alive() {
		h.Close()
		nh, cerr := d.connect(context.Background())
		if cerr != nil {
			d.handles <- h // closed: later calls fail with libnbd.ErrClosed
			return errors.Join(err, cerr)
		}
		h = nh
	}
	d.handles <- h
	return err
}

func (d *nbdDevice) Size() int64 { return d.size }

// maxNBDRead keeps requests under every server's limit (the NBD default maximum is 32 MiB).
const maxNBDRead = 4 << 20

func (d *nbdDevice) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, fmt.Errorf("nbd client: read at %d: %w", off, vfs.ErrOutOfRange)
	}
	if off >= d.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), d.size-off))
	for done := 0; done < n; {
		c := min(n-done, maxNBDRead)
		if err := d.do(ctx, func(h *libnbd.Handle) error { return h.Pread(ctx, p[done:done+c], off+int64(done)) }); err != nil {
			return done, err
		}
		done += c
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (d *nbdDevice) Extents(ctx context.Context, off, length int64) ([]vfs.Extent, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if off < 0 || off > d.size {
		return nil, fmt.Errorf("nbd client: extents at %d: %w", off, vfs.ErrOutOfRange)
	}
	end := min(off+length, d.size)
	if end <= off {
		return nil, nil
	}
	var st []libnbd.Status
	err := d.do(ctx, func(h *libnbd.Handle) error {
		var err error
		st, err = h.BlockStatus(ctx, off, min(end-off, 1<<30))
		return err
	})
	if err != nil {
		return nil, err
	}
	var out []vfs.Extent
	for pos := off; pos < end && len(st) > 0; st = st[1:] {
		n := min(st[0].Len, end-pos) // the last descriptor may run past the request
		if n <= 0 {
			return nil, fmt.Errorf("nbd client: block status at %d: descriptor %+v", pos, st[0])
		}
		k := vfs.Data
		switch st[0].Flags & (libnbd.StateHole | libnbd.StateZero) {
		case libnbd.StateHole | libnbd.StateZero:
			k = vfs.Hole
		case libnbd.StateZero:
			k = vfs.Zero
		}
		out = append(out, vfs.Extent{Off: pos, Len: n, Kind: k})
		pos += n
	}
	return out, nil
}

// serveAndCheck serves dev as a read-only export and runs the device suite through libnbd.
func serveAndCheck(t *testing.T, dev vfs.Device, want []byte, opt Options) {
	t.Helper()
	testenv.NeedTool(t, "nbdinfo") // libnbd is linked in; its tools come with it
	ts := startServer(t, opt)
	if err := ts.AddExport("disk", dev, ExportOptions{ReadOnly: true}); err != nil {
		t.Fatal(err)
	}
	client := newNBDDevice(t, ts.uri("disk"))
	vfstest.TestDevice(t, client, want)
	// The suite checks that the client's map is self-consistent and true to the bytes; it must
	// also be the device's map, less the depths.
	got, exp := kindMap(t, client), kindMap(t, dev)
	t.Logf("map through NBD: %v", got)
	if !slices.Equal(got, exp) {
		t.Errorf("the client sees the map\n%v\nthe device's map is\n%v", got, exp)
	}
}

// kindMap returns the extents of the whole device, without depths, neighbours of one kind
// merged.
func kindMap(t *testing.T, dev vfs.Device) []vfs.Extent {
	t.Helper()
	var out []vfs.Extent
	for pos := int64(0); pos < dev.Size(); {
		m, err := dev.Extents(context.Background(), pos, dev.Size()-pos)
		if err != nil || len(m) == 0 {
			t.Fatalf("Extents(%d, %d) = %v, %v", pos, dev.Size()-pos, m, err)
		}
		for _, e := range m {
			e.Depth = 0
			if n := len(out); n > 0 && out[n-1].Kind == e.Kind && out[n-1].End() == e.Off {
				out[n-1].Len += e.Len
			} else {
				out = append(out, e)
			}
			pos = e.End()
		}
	}
	return out
}

// TestDeviceContractOverNBD runs the device contract suite on what an NBD client reads from
// exports of a memory device (data, zeros and holes) and of a VMDK chain made by qemu-img,
// whose expected bytes come from `qemu-img convert -O raw`.
func TestDeviceContractOverNBD(t *testing.T) {
	t.Run("MemDevice", func(t *testing.T) {
		dev := newTestDevice(t)
		serveAndCheck(t, dev, deviceBytes(t, dev), Options{})
	})
	t.Run("VMDKChain", func(t *testing.T) {
		chain, want := vmdktest.QemuChain(t)
		serveAndCheck(t, chain, want, Options{})
	})
	t.Run("Empty", func(t *testing.T) {
		serveAndCheck(t, vfs.NewMemDevice(0), nil, Options{})
	})
}
