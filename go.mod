module github.com/h2kvm/h2kvm

go 1.26.0

require (
	github.com/alecthomas/kong v1.17.0
	github.com/google/btree v1.1.3
	github.com/hanwen/go-fuse/v2 v2.12.1
	github.com/pkg/sftp v1.13.12
	github.com/vmware/govmomi v0.53.0
	go.etcd.io/bbolt v1.5.0
	golang.org/x/crypto v0.59.0
	golang.org/x/sync v0.25.0
	golang.org/x/sys v0.50.0
	golang.org/x/text v0.44.0
	libguestfs.org/guestfs v0.0.0
	libvirt.org/go/libvirtxml v1.12008.0
)

require (
	github.com/google/uuid v1.6.0 // indirect
	github.com/kr/fs v0.1.0 // indirect
)

replace libguestfs.org/guestfs => ./.deps/guestfs
