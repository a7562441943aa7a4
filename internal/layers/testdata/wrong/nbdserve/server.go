package nbdserve

import (
	"github.com/h2kvm/h2kvm/cmd/h2kvm"
	"github.com/h2kvm/h2kvm/daemon"
	"github.com/h2kvm/h2kvm/vfs"
)
