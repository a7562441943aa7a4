package bad

import (
	"testing"

	"github.com/h2kvm/h2kvm/vfs/vfstest"
)
