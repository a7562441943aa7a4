// Package target is the seam between the pipeline and what it produces besides the disks: the
// definition of the converted VM for a hypervisor stack (a libvirt domain today). VALIDATE hands
// a Target the converted disks and what the VM is; the Target writes its definition into the
// output folder, checks it, and, if it is also a BootTester, can prove that the guest boots.
//
// The implementations live in sub-packages (target/libvirt); target/all lists them. This
// package imports none of them.
package target
