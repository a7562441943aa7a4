package daemon

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/h2kvm/h2kvm/vfs"
	"github.com/h2kvm/h2kvm/vfs/source"
)

// TestClientErrorKinds: a client of a daemon in another process sees the same sentinels as a
// caller of the daemon in its own process, for bad input (a missing parent, a corrupt VMDK) and
// for an unreachable source; the error body names the kind.
func TestClientErrorKinds(t *testing.T) {
	// A chain whose parent is gone.
	orphan := t.TempDir()
	orphanTop := smallChain(t, orphan)
	if err := os.Rename(filepath.Join(orphan, "base.vmdk"), filepath.Join(orphan, "moved.vmdk")); err != nil {
		t.Fatal(err)
	}
	// A hosted sparse VMDK whose header gives a grain size that is not a power of two.
	corrupt := filepath.Join(t.TempDir(), "corrupt.vmdk")
	runCmd(t, "", "qemu-img", "create", "-q", "-f", "vmdk", "-o", "subformat=monolithicSparse", corrupt, "8M")
	b, err := os.ReadFile(corrupt)
	if err != nil {
		t.Fatal(err)
	}
	if string(b[:4]) != "KDMV" {
		t.Fatalf("%s: no KDMV magic", corrupt)
	}
	binary.LittleEndian.PutUint64(b[20:], 3) // grainSize, in sectors
	if err := os.WriteFile(corrupt, b, 0o644); err != nil {
		t.Fatal(err)
	}
	// A port nothing listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()

	td := startDaemon(t, Config{Source: source.Config{Retry: fastRetry}})
	c := NewClient(td.cfg.ControlSocket)
	ctx := context.Background()
	sentinels := []error{ErrSource, ErrUnreachable, ErrBadSpec, vfs.ErrNotFound, vfs.ErrCorrupt, vfs.ErrTruncated,
		vfs.ErrChain, vfs.ErrUnsupported, vfs.ErrTransient, syscall.ECONNREFUSED}

	for _, tc := range []struct {
		name, source string
		kind         ErrorKind
		want         []error
	}{
		{"missing parent", orphanTop, KindBadInput, []error{ErrSource, vfs.ErrNotFound}},
		{"corrupt VMDK", corrupt, KindBadInput, []error{ErrSource, vfs.ErrCorrupt}},
		{"unreachable HTTP source", "http://" + closed + "/disk.vmdk", KindUnreachable, []error{ErrSource, ErrUnreachable, syscall.ECONNREFUSED}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, local := td.CreateExport(ctx, ExportSpec{Name: "x", Source: tc.source, ReadOnly: true})
			_, remote := c.CreateExport(ctx, ExportSpec{Name: "x", Source: tc.source, ReadOnly: true})
			if local == nil || remote == nil {
				t.Fatalf("created: in-process error %v, client error %v", local, remote)
			}
			t.Logf("in process: %v\nclient:     %v", local, remote)
			for _, s := range sentinels {
				if errors.Is(local, s) != errors.Is(remote, s) {
					t.Errorf("errors.Is(_, %q): in process %v, through the client %v", s, errors.Is(local, s), errors.Is(remote, s))
				}
			}
			for _, w := range tc.want {
				if !errors.Is(remote, w) {
					t.Errorf("client error %v does not wrap %q", remote, w)
				}
			}
			if tc.kind == KindBadInput && !errors.Is(remote, vfs.ErrNotFound) && !errors.Is(remote, vfs.ErrCorrupt) &&
				!errors.Is(remote, vfs.ErrTruncated) && !errors.Is(remote, vfs.ErrChain) {
				t.Errorf("bad input %v wraps none of the bad-input sentinels", remote)
			}
			st, body := td.do(t, "POST", "/v1/exports", ExportSpec{Name: "x", Source: tc.source, ReadOnly: true})
			var e apiError
			if err := json.Unmarshal(body, &e); err != nil || st != 422 || e.Kind != tc.kind {
				t.Errorf("error body (status %d): %s; want kind %q", st, body, tc.kind)
			}
		})
	}
}

// TestDecodeError: the kind and causes of an error body become sentinels; unknown names are
// ignored, and a body without a kind (an older daemon) still gets the status's sentinel.
func TestDecodeError(t *testing.T) {
	err := decodeError(apiError{Error: "boom", Kind: KindUnreachable, Causes: []string{"transient", "ECONNREFUSED", "no-such-cause"}}, ErrSource)
	for _, s := range []error{ErrSource, ErrUnreachable, vfs.ErrTransient, syscall.ECONNREFUSED} {
		if !errors.Is(err, s) {
			t.Errorf("%v does not wrap %q", err, s)
		}
	}
	if errors.Is(err, vfs.ErrNotFound) || err.Error() != "boom" {
		t.Errorf("decoded %q", err)
	}
	old := decodeError(apiError{Error: "old"}, ErrSource)
	if !errors.Is(old, ErrSource) || errors.Is(old, vfs.ErrNotFound) {
		t.Errorf("body without kind: %v", old)
	}
	for _, e := range []error{vfs.ErrCorrupt, vfs.ErrChain, vfs.ErrNotFound} {
		if k, names := classify(sourceError("x", e)); k != KindBadInput || len(names) != 1 {
			t.Errorf("classify(%v) = %s %v", e, k, names)
		}
	}
	if k, _ := classify(errors.New("disk full")); k != KindInternal {
		t.Errorf("a plain error is %s", k)
	}
}
