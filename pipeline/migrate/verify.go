package migrate

import (
	"context"
	"fmt"

	"github.com/h2kvm/h2kvm/daemon"
	"github.com/h2kvm/h2kvm/pipeline/machine"
	"github.com/h2kvm/h2kvm/pipeline/resolve/ovf"
)

// verifyDisk checks disk i's file against the digest its manifest lists, once CONVERT has read
// the disk: the daemon hashes the file through the export's cache, so the check fetches only
// what the conversion skipped (holes and unallocated grains of the file). It runs before the
// output is renamed into place: a disk that does not match never gets an output under its
// final name.
func (r *runner) verifyDisk(ctx context.Context, i int) error {
	if i >= len(r.job.VM.Disks) || i >= len(r.job.Exports) {
		return nil
	}
	m := r.job.VM.Disks[i].Manifest
	if m == nil || m.State != machine.DigestUnverified {
		return nil
	}
	r.emit(Event{Stage: Convert, Status: "progress", Message: fmt.Sprintf("verifying %s against the manifest (%s)", m.File, m.Alg)})
	v, err := r.be.Verify(ctx, r.job.Exports[i], daemon.VerifyRequest{})
	if err != nil {
		return fmt.Errorf("verify: disk %d (%s) against the manifest: %w", i, m.File, err)
	}
	chk := &ManifestCheck{File: m.File, Alg: v.Alg, Expected: v.Expected, Actual: v.Actual,
		Verified: v.State == daemon.VerifyOK, ExtraFetchedBytes: v.FetchedBytes, Seconds: v.Seconds}
	if i < len(r.job.Disks) {
		r.job.Disks[i].Manifest = chk
	}
	if v.State != daemon.VerifyOK {
		return fmt.Errorf("verify: disk file %s does not match the manifest: %s of the bytes read is %s, the manifest says %s: %w",
			m.File, v.Alg, v.Actual, v.Expected, ovf.ErrDigest)
	}
	r.emit(Event{Stage: Convert, Status: "progress", Message: fmt.Sprintf("%s matches the manifest (%s %s)", m.File, v.Alg, v.Actual)})
	return nil
}
