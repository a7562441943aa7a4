// Package pipeline holds the sentinel errors that the migration stages share and that decide the
// exit code (ErrGuestNotBootable, ErrBootTest). The stages live in its sub-packages:
//
//   - pipeline/migrate drives the stage order FETCH → FLATTEN → INSPECT → PLAN → FIX → CONVERT →
//     VALIDATE and keeps the job record;
//   - pipeline/resolve turns a SOURCE (vSphere, OVA, OVF, VMX, a disk) into a machine.VM;
//   - pipeline/machine is that VM description (hardware and disks);
//   - pipeline/convert is the CONVERT step (qemu-img from an NBD export);
//   - pipeline/target holds the output targets (libvirt first), which write, validate and
//     boot-test the VM definition;
//   - pipeline/host and pipeline/bootproof are host checks and boot evidence.
//
// The serve engine (exports over NBD and FUSE, control API) is package daemon.
package pipeline
