package httpsrc

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strings"

	"github.com/h2kvm/h2kvm/vfs"
	"github.com/h2kvm/h2kvm/vfs/source/stats"
)

// Opener opens the files of one remote folder tree: the file a user named, and the extents and
// parents its descriptors name, on the same server with the same options and counters.
type Opener struct {
	c    *client
	base *url.URL // the first file, without user info
	root string   // URL path prefix, ends with "/"
}

var (
	_ vfs.Opener     = (*Opener)(nil)
	_ stats.Reporter = (*Opener)(nil)
)

// NewOpener returns an opener for files on the server of first (an http or https URL). Names
// may not leave opts.Root, by default the folder of first.
func NewOpener(first string, opts Options) (*Opener, error) {
	u, err := parseURL(first)
	if err != nil {
		return nil, err
	}
	u.User = nil
	root := opts.Root
	if root == "" {
		root = path.Dir(u.Path)
	}
	if !strings.HasSuffix(root, "/") {
		root += "/"
	}
	if !strings.HasPrefix(path.Clean(u.Path), root) {
		return nil, fmt.Errorf("http: %s lies outside the root folder %s", u, root)
	}
	c, err := newClient(opts)
	if err != nil {
		return nil, err
	}
	return &Opener{c: c, base: u, root: root}, nil
}

// Name returns the first file's URL without user information.
func (o *Opener) Name() string { return o.base.String() }

// Root returns the URL path prefix that names may not leave.
func (o *Opener) Root() string { return o.root }

// Open opens name, a URL returned by Resolve or the first file's URL. It must be on the
// opener's server and under its root.
func (o *Opener) Open(ctx context.Context, name string) (vfs.Source, error) {
	u, err := parseURL(name)
	if err != nil {
		return nil, err
	}
	if err := o.check(u); err != nil {
		return nil, fmt.Errorf("http: open %s: %w", Redact(u), err)
	}
	return o.c.open(ctx, u)
}

func (o *Opener) check(u *url.URL) error {
	if u.Scheme != o.base.Scheme || !strings.EqualFold(u.Host, o.base.Host) {
		return fmt.Errorf("not on %s://%s: %w", o.base.Scheme, o.base.Host, vfs.ErrChain)
	}
	if p := path.Clean(u.Path); !strings.HasPrefix(p, o.root) {
		return fmt.Errorf("%s lies outside %s: %w", p, o.root, vfs.ErrChain)
	}
	return nil
}

// Resolve returns the URL of the file called rel in a descriptor at base. A relative rel
// resolves against base's folder, keeping base's query (dcPath, dsName); an absolute path is
// mapped by Options.MapAbsolute when set and otherwise taken as a path on the same server; a
// full URL must be on the same server. The result must stay under the root (vfs.ErrChain).
func (o *Opener) Resolve(base, rel string) (string, error) {
	b, err := parseURL(base)
	if err != nil {
		return "", err
	}
	if rel == "" {
		return "", fmt.Errorf("http: empty file name in %s: %w", Redact(b), vfs.ErrChain)
	}
	var u url.URL
	switch {
	case strings.HasPrefix(rel, "http://") || strings.HasPrefix(rel, "https://"):
		r, err := parseURL(rel)
		if err != nil {
			return "", err
		}
		u = *r
	case strings.HasPrefix(rel, "/"):
		u = *b
		u.Path = path.Clean(rel)
		if m := o.c.opts.MapAbsolute; m != nil {
			if p, ok := m(b, rel); ok {
				u.Path = p
			}
		}
	default:
		u = *b
		u.Path = path.Join(path.Dir(b.Path), rel)
	}
	u.RawPath = ""
	u.User = nil
	if err := o.check(&u); err != nil {
		return "", fmt.Errorf("http: %q named in %s: %w", rel, Redact(b), err)
	}
	return u.String(), nil
}

// Stats returns what the files opened through this opener fetched.
func (o *Opener) Stats() stats.Snapshot { return o.c.stats.Snapshot() }

// Close closes idle connections of the opener's own transport.
func (o *Opener) Close() error {
	if t, ok := o.c.hc.Transport.(*http.Transport); ok && o.c.opts.Transport == nil {
		t.CloseIdleConnections()
	}
	return nil
}
