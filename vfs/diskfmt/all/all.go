// Package all is the registry of the disk formats h2kvm reads. It lists them explicitly (no
// init-time registration), so a program's formats are the ones it passes to vfs.OpenDisk.
package all

import (
	"github.com/h2kvm/h2kvm/vfs"
	"github.com/h2kvm/h2kvm/vfs/vmdk"
)

// Formats returns the known disk formats in detection order: vfs.OpenDisk uses the first whose
// Detect accepts a file. Each call returns a new slice the caller may modify.
func Formats() []vfs.Format {
	return []vfs.Format{vmdk.Format{}}
}
