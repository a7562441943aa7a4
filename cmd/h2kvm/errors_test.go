package main

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/h2kvm/h2kvm/pipeline"
	"github.com/h2kvm/h2kvm/pipeline/resolve/ovf"
	"github.com/h2kvm/h2kvm/pipeline/resolve/vmx"
	"github.com/h2kvm/h2kvm/pipeline/resolve/vsphere"
	"github.com/h2kvm/h2kvm/vfs"
	"github.com/h2kvm/h2kvm/vfs/source/tarsrc"
)

func TestExitCode(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("vmdk: disk.vmdk: grain table 3: %w", err) }
	cases := []struct {
		err  error
		want int
	}{
		{nil, 0},
		{errors.New("boom"), 1},
		{vfs.ErrReadOnly, 1},
		{vfs.ErrTransient, 1},
		{wrap(vfs.ErrCorrupt), 2},
		{wrap(vfs.ErrTruncated), 2},
		{wrap(vfs.ErrUnsupported), 2},
		{wrap(vfs.ErrNotFound), 2},
		{wrap(vfs.ErrChain), 2},
		{wrap(vfs.ErrOutOfRange), 2},
		{usageErrorf("--resume needs --output"), 2},
		{fmt.Errorf("resolve: web.ova: %w", ovf.ErrDigest), 2},
		{fmt.Errorf("resolve: web.ovf: %w", ovf.ErrInvalid), 2},
		{fmt.Errorf("resolve: web.vmx: %w", vmx.ErrInvalid), 2},
		{fmt.Errorf("tar: x.ova: %w", tarsrc.ErrUnsafeMember), 2},
		{fmt.Errorf("vsphere: vc1: %w", vsphere.ErrLogin), 2},
		{fmt.Errorf("vsphere: vc1: VM web: %w", vsphere.ErrNotFound), 2},
		{fmt.Errorf("vsphere: snapshot: %w", vsphere.ErrAmbiguous), 2},
		{fmt.Errorf("vsphere: %w", vsphere.ErrBadURL), 2},
		{fmt.Errorf("vsphere: vc1: %w", vsphere.ErrUnsupported), 2},
		{fmt.Errorf("inspect: no root filesystem: %w", pipeline.ErrGuestNotBootable), 3},
		{fmt.Errorf("validate: %w", pipeline.ErrBootTest), 4},
		{context.Canceled, 130},
		{fmt.Errorf("convert: %w", context.Canceled), 130},
		// A verdict wins over the input problem behind it; an interruption wins over all.
		{fmt.Errorf("%w: %w", pipeline.ErrGuestNotBootable, vfs.ErrCorrupt), 3},
		{fmt.Errorf("%w: %w", context.Canceled, pipeline.ErrBootTest), 130},
	}
	for _, c := range cases {
		if got := exitCode(c.err); got != c.want {
			t.Errorf("exitCode(%v) = %d, want %d", c.err, got, c.want)
		}
	}
}
