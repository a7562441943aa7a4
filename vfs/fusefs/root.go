package fusefs

import (
	"context"
	"sort"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// rootNode is the mount's root folder. It answers lookups and listings from the export table
// (FS.dirs) rather than from the inode's child list: go-fuse re-inserts a looked-up child into
// its parent after the lookup returns, so a lookup racing with Remove can leave a stale child
// behind. The table, guarded by FS.mu, is the truth.
type rootNode struct {
	fs.Inode
	f *FS
}

var (
	_ fs.NodeLookuper  = (*rootNode)(nil)
	_ fs.NodeReaddirer = (*rootNode)(nil)
)

func (r *rootNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	r.f.mu.Lock()
	dir := r.f.dirs[name]
	r.f.mu.Unlock()
	if dir == nil {
		return nil, syscall.ENOENT
	}
	out.Attr.Mode = syscall.S_IFDIR | 0o755
	out.Attr.Uid, out.Attr.Gid = r.f.uid, r.f.gid
	return dir, 0
}

func (r *rootNode) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	r.f.mu.Lock()
	names := make([]string, 0, len(r.f.dirs))
	for n := range r.f.dirs {
		names = append(names, n)
	}
	r.f.mu.Unlock()
	sort.Strings(names)
	ents := make([]fuse.DirEntry, len(names))
	for i, n := range names {
		ents[i] = fuse.DirEntry{Name: n, Mode: syscall.S_IFDIR}
	}
	return fs.NewListDirStream(ents), 0
}
