// Package urlpath resolves file names found in descriptors against the path of a URL and
// keeps the result inside a root folder.
package urlpath

import (
	"fmt"
	"net/url"
	"path"
	"strings"

	"github.com/h2kvm/h2kvm/vfs"
)

// Root returns the folder of p with a trailing slash.
func Root(p string) string {
	d := path.Dir(path.Clean("/" + p))
	if !strings.HasSuffix(d, "/") {
		d += "/"
	}
	return d
}

// Under reports whether the cleaned p lies in root (which ends with "/").
func Under(p, root string) bool {
	return strings.HasPrefix(path.Clean("/"+p), root)
}

// Resolve returns a copy of base whose path is rel resolved against base's folder (rel itself
// when absolute), cleaned. A result outside root is refused with vfs.ErrChain.
func Resolve(base *url.URL, rel, root string) (*url.URL, error) {
	if rel == "" {
		return nil, fmt.Errorf("empty file name: %w", vfs.ErrChain)
	}
	u := *base
	u.User = nil
	// Joined without a leading slash, a path that climbs above "/" keeps its leading "..".
	var p string
	if strings.HasPrefix(rel, "/") {
		p = path.Clean(strings.TrimLeft(rel, "/"))
	} else {
		p = path.Join(strings.TrimLeft(path.Dir(path.Clean("/"+base.Path)), "/"), rel)
	}
	if p == ".." || strings.HasPrefix(p, "../") {
		return nil, fmt.Errorf("%q climbs above /: %w", rel, vfs.ErrChain)
	}
	u.Path = path.Clean("/" + p)
	u.RawPath = ""
	if !Under(u.Path, root) {
		return nil, fmt.Errorf("%q leaves the folder %s: %w", rel, root, vfs.ErrChain)
	}
	return &u, nil
}
