package source

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/h2kvm/h2kvm/vfs"
	"github.com/h2kvm/h2kvm/vfs/source/datastore"
	"github.com/h2kvm/h2kvm/vfs/source/httpsrc"
	"github.com/h2kvm/h2kvm/vfs/source/nbdsrc"
	"github.com/h2kvm/h2kvm/vfs/source/retry"
	"github.com/h2kvm/h2kvm/vfs/source/sftpsrc"
	"github.com/h2kvm/h2kvm/vfs/source/stats"
	"github.com/h2kvm/h2kvm/vfs/source/tarsrc"
	"github.com/h2kvm/h2kvm/vfs/source/vsession"
)

// Stats is what an opener fetched: bytes, requests, retries, reconnects.
type Stats = stats.Snapshot

// Opener is a vfs.Opener for one location's kind that also reports fetch statistics and
// releases its connections and sessions on Close.
type Opener interface {
	vfs.Opener
	io.Closer
	Stats() Stats
}

// Secret is a credential. It prints as "[redacted]" so that a Config can be logged.
type Secret string

func (Secret) String() string   { return "[redacted]" }
func (Secret) GoString() string { return "[redacted]" }

// Config holds the credentials, TLS and retry settings of remote sources. Build it with
// ConfigFromEnv; credentials never come from command-line flags.
type Config struct {
	TLS httpsrc.TLSOptions
	// Retry bounds the retries of one read or open.
	Retry retry.Policy
	// StallTimeout bounds a request that makes no progress (0: each kind's default).
	StallTimeout time.Duration
	// Conns is the number of parallel connections or handles per NBD or SFTP file (0: default).
	Conns int

	VSphereUser     string
	VSpherePassword Secret
	// VSphereSessions holds live vSphere logins (the inventory resolver's) that datastore
	// openers of the same host use instead of logging in again; nil means none.
	VSphereSessions *vsession.Shelf

	// AllowPlaintext allows http:// datastore URLs, whose login and requests carry the
	// password and session cookie in clear (EnvAllowPlaintext); they are refused otherwise.
	AllowPlaintext bool
	// AllowOutsideDisks lets a .vmx or an OVF name disks outside its own folder (datastore,
	// for a remote one); see resolve.Options.AllowOutsideDisks. EnvAllowOutsideDisks or
	// migrate --allow-outside-disks.
	AllowOutsideDisks bool

	SSHUser          string
	SSHPassword      Secret
	SSHKeyFile       string
	SSHKnownHosts    string
	SSHInsecureHosts bool

	// Stats, when set, is shared by the opener (one per export); otherwise each opener has
	// its own.
	Stats *stats.Counter
}

// Open returns the Opener for the kind of location and the normalized name of the file to open
// first (pass it to Opener.Open):
//
//   - a local path (or file:// URL): vfs.LocalOpener rooted at the file's folder, absolute path;
//   - https://HOST/folder/PATH?dcPath=…&dsName=…: a datastore opener (logs in to vSphere);
//   - any other http(s) URL: an HTTP Range opener;
//   - ssh://[user@]host[:port]/path (or sftp://): an SFTP opener;
//   - nbd://, nbds://, nbd+unix://, nbds+unix:// URIs: an NBD opener;
//   - ova:ARCHIVE#MEMBER: a member of an OVA read in place (package tarsrc), the archive
//     itself opened by the rules above.
//
// Names never carry credentials: user information is removed from URLs.
func Open(ctx context.Context, location string, cfg Config) (Opener, string, error) {
	if cfg.Stats == nil {
		cfg.Stats = new(stats.Counter)
	}
	if tarsrc.IsLocation(location) {
		// A member of an OVA, read in place: the archive is opened with the opener of its own
		// location's kind.
		archive, _, err := tarsrc.Split(location)
		if err != nil {
			return nil, "", err
		}
		under, _, err := Open(ctx, archive, cfg)
		if err != nil {
			return nil, "", err
		}
		return tarOpener{Opener: tarsrc.NewOpener(under), under: under}, location, nil
	}
	scheme, _, hasScheme := strings.Cut(location, "://")
	if !hasScheme || scheme == "file" {
		p := strings.TrimPrefix(location, "file://")
		abs, err := filepath.Abs(p)
		if err != nil {
			return nil, "", fmt.Errorf("source: %s: %w", p, err)
		}
		return localOpener{vfs.LocalOpener{Root: filepath.Dir(abs)}}, abs, nil
	}
	u, err := url.Parse(location)
	if err != nil {
		return nil, "", fmt.Errorf("source: bad location: %w", err)
	}
	if _, set := u.User.Password(); set {
		return nil, "", fmt.Errorf("source: %s: a password in the location is not allowed; use the environment or a file", u.Redacted())
	}
	user := ""
	if u.User != nil {
		user = u.User.Username()
	}
	clean := *u
	clean.User = nil
	name := clean.String()
	hopts := httpsrc.Options{TLS: cfg.TLS, Retry: cfg.Retry, StallTimeout: cfg.StallTimeout, Stats: cfg.Stats}
	switch {
	case datastore.IsDatastoreURL(u):
		if user == "" {
			user = cfg.VSphereUser
		}
		o, err := datastore.NewOpener(ctx, name, datastore.Options{HTTP: hopts, User: user, Password: string(cfg.VSpherePassword),
			AllowPlaintext: cfg.AllowPlaintext, Session: cfg.VSphereSessions.Get(u.Host, user)})
		if err != nil {
			return nil, "", err
		}
		return o, name, nil
	case u.Scheme == "http" || u.Scheme == "https":
		o, err := httpsrc.NewOpener(name, hopts)
		if err != nil {
			return nil, "", err
		}
		return o, name, nil
	case u.Scheme == "ssh" || u.Scheme == "sftp":
		if user == "" {
			user = cfg.SSHUser
		}
		o, err := sftpsrc.NewOpener(name, sftpsrc.Options{User: user, Password: string(cfg.SSHPassword),
			KeyFile: cfg.SSHKeyFile, KnownHostsFile: cfg.SSHKnownHosts, InsecureIgnoreHostKey: cfg.SSHInsecureHosts,
			Conns: cfg.Conns, Retry: cfg.Retry, StallTimeout: cfg.StallTimeout, Stats: cfg.Stats})
		if err != nil {
			return nil, "", err
		}
		return o, name, nil
	case nbdsrc.IsNBDURL(u):
		o, err := nbdsrc.NewOpener(name, nbdsrc.Options{Conns: cfg.Conns, Retry: cfg.Retry, StallTimeout: cfg.StallTimeout, Stats: cfg.Stats})
		if err != nil {
			return nil, "", err
		}
		return o, name, nil
	case u.Scheme == "vsphere":
		return nil, "", fmt.Errorf("source: %s names a VM, not a file: the pipeline resolves it to datastore URLs: %w", name, vfs.ErrUnsupported)
	}
	return nil, "", fmt.Errorf("source: %s: unknown scheme %q (want a path, https, ssh, nbd, nbd+unix): %w", name, u.Scheme, vfs.ErrUnsupported)
}

// tarOpener reads members of an archive; connections and statistics are the archive opener's.
type tarOpener struct {
	*tarsrc.Opener
	under Opener
}

func (o tarOpener) Close() error { return o.under.Close() }
func (o tarOpener) Stats() Stats { return o.under.Stats() }

// localOpener is vfs.LocalOpener with the Opener extras; local reads are not counted.
type localOpener struct{ vfs.LocalOpener }

func (localOpener) Close() error { return nil }
func (localOpener) Stats() Stats { return Stats{} }
