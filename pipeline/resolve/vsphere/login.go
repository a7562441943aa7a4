package vsphere

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vmware/govmomi/vim25"

	"github.com/h2kvm/h2kvm/vfs/source/httpsrc"
	"github.com/h2kvm/h2kvm/vfs/source/retry"
	"github.com/h2kvm/h2kvm/vfs/source/vsession"
)

// Environment variables read for credentials.
const (
	EnvUser         = "H2KVM_VSPHERE_USER"
	EnvPassword     = "H2KVM_VSPHERE_PASSWORD"
	EnvPasswordFile = "H2KVM_VSPHERE_PASSWORD_FILE"
)

// Options configure access to vSphere.
type Options struct {
	// User overrides the URL's user; when both are empty H2KVM_VSPHERE_USER is used.
	User string
	// Password, when empty, comes from H2KVM_VSPHERE_PASSWORD, then from PasswordFile (or
	// H2KVM_VSPHERE_PASSWORD_FILE).
	Password     string
	PasswordFile string
	// TLS is the certificate policy (verification on by default).
	TLS httpsrc.TLSOptions
	// Snapshot chooses a snapshot by name, by path ("parent/child") or by MoRef; "" is the
	// current state. The URL's ?snapshot= is used when this is empty.
	Snapshot string
	// SessionFile, when set, keeps the session cookie between runs (see the package doc).
	SessionFile string
	// Timeout bounds each SOAP call; 0 means 60 s.
	Timeout time.Duration
	// Retry bounds the retries of a login after network failures (zero: retry's defaults).
	Retry retry.Policy
	// Sessions, when set, receives the session instead of a logout at the end of Resolve: its
	// owner passes it on to the datastore reads of the VM's disks (one login for both) and
	// logs it out when done.
	Sessions *vsession.Shelf
	// Warn receives warnings; nil drops them.
	Warn func(msg string)
}

func (o *Options) warnf(format string, args ...any) {
	if o.Warn != nil {
		o.Warn(fmt.Sprintf(format, args...))
	}
}

// user returns the user to log in as.
func (o *Options) user(l *Location) string {
	user := o.User
	if user == "" {
		user = l.User
	}
	if user == "" {
		user = os.Getenv(EnvUser)
	}
	return user
}

// credentials returns the user and password to log in with.
func (o *Options) credentials(l *Location) (user, password string, err error) {
	user = o.user(l)
	password = o.Password
	if password == "" {
		password = os.Getenv(EnvPassword)
	}
	if password == "" {
		pf := o.PasswordFile
		if pf == "" {
			pf = os.Getenv(EnvPasswordFile)
		}
		if pf != "" {
			b, err := os.ReadFile(pf)
			if err != nil {
				return "", "", fmt.Errorf("vsphere: password file: %w", err)
			}
			password = strings.TrimRight(string(b), "\r\n")
		}
	}
	if user == "" || password == "" {
		return "", "", fmt.Errorf("vsphere: %s: a user (in the URL or %s) and a password (%s or %s) are needed: %w", l.Host, EnvUser, EnvPassword, EnvPasswordFile, ErrLogin)
	}
	return user, password, nil
}

// Client is a logged-in vSphere session.
type Client struct {
	// set once
	VC   *vim25.Client // the SOAP client of the login (the resolver does not renew sessions)
	Host string
	User string
	sess *vsession.Session
}

// Login logs in to the host of l, reusing a saved session when Options.SessionFile holds a
// valid one.
func Login(ctx context.Context, l *Location, opt Options) (*Client, error) {
	user := opt.user(l)
	if user == "" {
		return nil, fmt.Errorf("vsphere: %s: a user is needed (in the URL or %s): %w", l.Host, EnvUser, ErrLogin)
	}
	var saved string
	if opt.SessionFile != "" {
		saved = loadCookie(opt.SessionFile, l.Host, user)
	}
	// The password is needed only when no saved session is adopted.
	_, password, credErr := opt.credentials(l)
	if credErr != nil && saved == "" {
		return nil, credErr
	}
	rt, err := httpsrc.NewTransport(opt.TLS)
	if err != nil {
		return nil, fmt.Errorf("vsphere: %w", err)
	}
	timeout := opt.Timeout
	if timeout == 0 {
		timeout = 60 * time.Second
	}
	sess, err := vsession.Login(ctx, vsession.Config{Host: l.Host, User: user, Password: password, Cookie: saved,
		Transport: rt, Timeout: timeout, Retry: opt.Retry})
	if err != nil {
		return nil, loginError(ctx, l.Host, user, err, credErr)
	}
	c := &Client{VC: sess.Client(), Host: l.Host, User: user, sess: sess}
	if opt.SessionFile != "" && c.Cookie() != saved {
		if err := c.save(opt.SessionFile); err != nil {
			opt.warnf("vsphere: session not saved: %v", err)
		}
	}
	return c, nil
}

// loginError maps a failed vsession.Login to this package's errors: a refused login is
// ErrLogin, missing credentials are credErr, a refused certificate names the host and stays
// recognisable, and anything else is a host that cannot be reached.
func loginError(ctx context.Context, host, user string, err, credErr error) error {
	var ce *httpsrc.CertError
	switch {
	case ctx.Err() != nil && err == ctx.Err():
		return err
	case errors.Is(err, vsession.ErrNoCredentials) && credErr != nil:
		return credErr
	case errors.Is(err, vsession.ErrLoginRefused):
		return fmt.Errorf("vsphere: login to %s as %s: %w", host, user, ErrLogin)
	case errors.As(err, &ce):
		return fmt.Errorf("vsphere: %s: %w", host, ce)
	}
	return fmt.Errorf("vsphere: cannot reach %s: %w", host, err)
}

// Session is the vSphere session of c: hand it to datastore.Options.Session to read the
// VM's disks without a second login. It stays c's: Logout ends it.
func (c *Client) Session() *vsession.Session { return c.sess }

// Logout ends the session unless it is kept in a session file for reuse.
func (c *Client) Logout(ctx context.Context, opt Options) error {
	if opt.SessionFile != "" {
		return nil
	}
	if err := c.sess.Logout(ctx); err != nil {
		return fmt.Errorf("vsphere: %w", err)
	}
	return nil
}

// Cookie returns the session cookie value (for /folder requests made with this session).
func (c *Client) Cookie() string { return c.sess.Cookie() }

type savedSession struct {
	Host   string `json:"host"`
	User   string `json:"user"`
	Cookie string `json:"cookie"`
}

func (c *Client) save(file string) error {
	b, err := json.Marshal(savedSession{Host: c.Host, User: c.User, Cookie: c.Cookie()})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return err
	}
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, file)
}

// loadCookie returns the cookie saved in file for host and user, or "" (vsession.Login then
// adopts it while the server still knows the session).
func loadCookie(file, host, user string) string {
	b, err := os.ReadFile(file)
	if err != nil {
		return ""
	}
	var s savedSession
	if json.Unmarshal(b, &s) != nil || s.Host != host || s.User != user {
		return ""
	}
	return s.Cookie
}
