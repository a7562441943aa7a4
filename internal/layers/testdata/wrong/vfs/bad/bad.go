package bad

import (
	"os/exec"

	"go.etcd.io/bbolt"

	"github.com/h2kvm/h2kvm/nbdserve"
	"github.com/h2kvm/h2kvm/vfs/cache"
)
