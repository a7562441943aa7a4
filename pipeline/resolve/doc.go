// Package resolve turns what a user hands h2kvm (a SOURCE) into a machine.VM: the VM's
// hardware and the SOURCE location of the top VMDK link of each disk. It is the control plane
// of the FETCH stage: it reads descriptors (a .vmx, an OVF, a manifest, the vSphere inventory)
// and never a disk's bytes, which the block layer reads lazily from the locations it returns
// (except when Options.VerifyDisks asks for disk digests to be checked).
//
// Resolve dispatches on the SOURCE:
//
//	vsphere://[user@]vcenter/DC/vm/PATH/NAME   package vsphere (inventory, snapshots, /folder URLs)
//	….ova                                     the archive's OVF and manifest, read in place;
//	                                          disks are ova:ARCHIVE#MEMBER locations (tarsrc)
//	….ovf                                     the OVF next to its files and its .mf
//	….vmx                                     the .vmx; disks are its fileNames resolved
//	                                          against the .vmx's folder
//	anything else (.vmdk, https://, ssh://, nbd://)  a one-disk VM of unknown hardware
//
// An .ova/.ovf/.vmx may be local or remote: it is read through Options.Opener (a
// vfs.LocalOpener when nil), so a .vmx on a datastore resolves its disks to datastore URLs.
//
// Verification (OVA/OVF): the OVF descriptor is checked against the manifest eagerly and a
// mismatch refuses the package (ovf.ErrDigest); a manifest that does not list the OVF is a
// warning. Disk members are read at random and in part, which cannot be checked against a
// whole-file digest on the way, so by default Resolve reads no disk: it returns each listed
// disk's digest in machine.Disk.Manifest (state "unverified") for the migration to check once
// it has read the disk. Options.VerifyDisks reads each listed disk completely first (the cost of
// a full read) and refuses a mismatch (state "verified"); Options.NoVerifyDisks turns the check
// off (state "off") with a warning. Signatures (.cert) are not checked, and a warning says so.
//
// Warnings (a running VM read without a snapshot, an unverified disk, a truncated disk member,
// skipped devices) go to Options.Warn; errors are wrapped with "resolve: " and the subsystem.
package resolve
