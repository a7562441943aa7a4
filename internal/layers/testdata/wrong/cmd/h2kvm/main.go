package main

import (
	"github.com/h2kvm/h2kvm/daemon"
	"github.com/h2kvm/h2kvm/vfs/vfstest"
)
