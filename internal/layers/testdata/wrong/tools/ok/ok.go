package ok

import "github.com/h2kvm/h2kvm/vfs/vmdk/vmdkgen"
