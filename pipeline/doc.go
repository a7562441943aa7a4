// Package pipeline holds what the migration stages share: the VM description that sources
// resolve to (VM, NIC, Disk), the libvirt domain built from it (Domain, WriteDomainXML), the
// CONVERT step (Convert: qemu-img from an NBD export, written under a temporary name and renamed
// when complete), the VALIDATE checks (ValidateDomainXML, BootTest under libvirtd), an in-process
// daemon for commands run without one (StartEmbedded), and the sentinel errors that decide the
// exit code (ErrGuestNotBootable, ErrBootTest).
//
// The stage order itself is driven by package pipeline/migrate; source resolution (vSphere, OVA,
// OVF, VMX) lives in pipeline/resolve; the daemon in pipeline/daemon.
package pipeline
