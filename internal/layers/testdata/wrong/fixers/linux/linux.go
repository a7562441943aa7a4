package linux

import (
	"github.com/h2kvm/h2kvm/fixers"
	"github.com/h2kvm/h2kvm/fixers/windows"
	"github.com/h2kvm/h2kvm/vfs"
)
