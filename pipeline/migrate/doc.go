// Package migrate drives a migration through the invariant stage order
//
//	FETCH → FLATTEN → INSPECT → PLAN → FIX → CONVERT → VALIDATE
//
// FETCH resolves the SOURCE into a VM description (disks and hardware); FLATTEN serves each disk
// chain as a writable export of a daemon (a running one, or one embedded in this process) whose
// writes land in a copy-on-write overlay; INSPECT and PLAN derive the guest's facts and the fixes
// through libguestfs attached to those exports; FIX applies the fixes into the overlays; CONVERT
// copies each export into the output folder with qemu-img; VALIDATE writes and checks the
// libvirt domain and, when asked, boots it under libvirtd.
//
// Stages may be skipped, never reordered. Each stage's outcome is recorded in a job record (a
// bbolt database in the output folder's .h2kvm directory) so that Resume continues after the
// last completed stage with the same overlays. A dry run stops after PLAN and, unless it
// resumes a job, leaves only its reports (its exports and state are removed). Outputs of an
// earlier job are never overwritten: a new job whose output names exist fails in FETCH. No full copy of a disk exists at any moment:
// local disk use is the outputs, the overlays and the bounded cache.
package migrate
