// Package vmx parses VMware .vmx configuration files.
//
// Parse reads `key = "value"` lines (keys case-insensitive, '#' comments, values quoted or
// bare), undoes VMware's |XX hex escapes (|22 is '"', |7C is '|'), and decodes values from the
// charset named by `.encoding` (UTF-8 when absent; windows-1252, Shift_JIS, GBK, … through
// golang.org/x/text). A file is at most MaxSize bytes; a line that is not `key = value` is an
// error naming the file and line.
//
// Hardware interprets the entries: displayName, numvcpus, cpuid.coresPerSocket, memSize,
// firmware ("efi" or BIOS), uefi.secureBoot.enabled, NICs (ethernetN.present, .virtualDev,
// .addressType with .generatedAddress / .address, .networkName) and disks: every
// scsiX:Y, sataX:Y, nvmeX:Y and ideX:Y device that is present, whose controller is not
// marked absent, whose deviceType is a disk type (or unset) and whose fileName is a .vmdk.
// The fileName is the TOP link of the disk's chain: while snapshots exist it is the newest
// delta (…-000002.vmdk) and the base is reached through the delta's parentFileNameHint.
// Disks are ordered with bios.hddOrder's first disk first, then scsi, sata,
// nvme, ide by bus and unit.
package vmx
