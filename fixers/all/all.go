// Package all is the registry of the guest fixers h2kvm ships.
package all

import (
	"github.com/h2kvm/h2kvm/fixers"
	"github.com/h2kvm/h2kvm/fixers/linux"
)

// Fixers returns a new instance of every shipped fixer, in the order fixers.Choose tries them.
func Fixers() []fixers.Fixer { return []fixers.Fixer{linux.New()} }
