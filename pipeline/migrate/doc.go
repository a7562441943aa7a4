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
// A VM of several disks is one job: every disk is exported, attached to libguestfs in the VM's
// order (sda, sdb, …), converted to NAME-diskN (a single disk keeps NAME) and named in that
// order in the domain (vda, vdb, …); the report has a record per disk.
//
// Stages may be skipped, never reordered. Each stage's outcome is recorded in a job record (a
// bbolt database in the output folder's .h2kvm directory) so that Resume continues after the
// last completed stage with the same overlays. FIX records each change as the fixers make it; a
// FIX cut short is redone from INSPECT and its recorded changes are merged with the new run's
// (mergeFixes), so the report lists every change once with its first before and last after. A dry run stops after PLAN and, unless it
// resumes a job, leaves only its reports (its exports and state are removed). Outputs of an
// earlier job are never overwritten: a new job whose output names exist fails in FETCH. No full copy of a disk exists at any moment:
// local disk use is the outputs, the overlays and the bounded cache.
package migrate
