package vsphere

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/h2kvm/h2kvm/vfs/source/httpsrc"
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
	VC   *vim25.Client
	Host string
	User string
	rt   http.RoundTripper
}

// Login logs in to the host of l, reusing a saved session when Options.SessionFile holds a
// valid one.
func Login(ctx context.Context, l *Location, opt Options) (*Client, error) {
	user := opt.user(l)
	if user == "" {
		return nil, fmt.Errorf("vsphere: %s: a user is needed (in the URL or %s): %w", l.Host, EnvUser, ErrLogin)
	}
	rt, err := httpsrc.NewTransport(opt.TLS)
	if err != nil {
		return nil, fmt.Errorf("vsphere: %w", err)
	}
	timeout := opt.Timeout
	if timeout == 0 {
		timeout = 60 * time.Second
	}
	sdk := &url.URL{Scheme: "https", Host: l.Host, Path: "/sdk"}
	sc := soap.NewClient(sdk, false)
	sc.Client.Transport = rt
	sc.Client.Timeout = timeout
	vc, err := vim25.NewClient(ctx, sc)
	if err != nil {
		return nil, connectError(l.Host, err)
	}
	c := &Client{VC: vc, Host: l.Host, User: user, rt: rt}
	if opt.SessionFile != "" && c.reuse(ctx, opt.SessionFile) {
		return c, nil
	}
	_, password, err := opt.credentials(l)
	if err != nil {
		return nil, err
	}
	if err := session.NewManager(vc).Login(ctx, url.UserPassword(user, password)); err != nil {
		if fault.Is(err, &types.InvalidLogin{}) {
			return nil, fmt.Errorf("vsphere: login to %s as %s: %w", l.Host, user, ErrLogin)
		}
		return nil, connectError(l.Host, err)
	}
	if opt.SessionFile != "" {
		if err := c.save(opt.SessionFile); err != nil {
			opt.warnf("vsphere: session not saved: %v", err)
		}
	}
	return c, nil
}

// connectError names the host and keeps certificate errors recognisable.
func connectError(host string, err error) error {
	var ce *httpsrc.CertError
	if errors.As(err, &ce) {
		return fmt.Errorf("vsphere: %s: %w", host, ce)
	}
	return fmt.Errorf("vsphere: cannot reach %s: %w", host, err)
}

// Logout ends the session unless it is kept in a session file for reuse.
func (c *Client) Logout(ctx context.Context, opt Options) error {
	if opt.SessionFile != "" {
		return nil
	}
	return session.NewManager(c.VC).Logout(ctx)
}

// Cookie returns the session cookie value (for /folder requests made with this session).
func (c *Client) Cookie() string {
	if h := c.VC.SessionCookie(); h != nil {
		return h.Value
	}
	return ""
}

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

// reuse installs a saved cookie and keeps it when the server still knows the session.
func (c *Client) reuse(ctx context.Context, file string) bool {
	b, err := os.ReadFile(file)
	if err != nil {
		return false
	}
	var s savedSession
	if json.Unmarshal(b, &s) != nil || s.Host != c.Host || s.User != c.User || s.Cookie == "" {
		return false
	}
	u := c.VC.URL()
	c.VC.Jar.SetCookies(u, []*http.Cookie{{Name: soap.SessionCookieName, Value: s.Cookie, Path: "/"}})
	us, err := session.NewManager(c.VC).UserSession(ctx)
	if err == nil && us != nil {
		return true
	}
	c.VC.Jar.SetCookies(u, []*http.Cookie{{Name: soap.SessionCookieName, Value: "", Path: "/", MaxAge: -1}})
	return false
}
