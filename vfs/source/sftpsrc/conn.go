package sftpsrc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
	"golang.org/x/sync/singleflight"

	"github.com/h2kvm/h2kvm/vfs/source/retry"
)

// ErrHostKey: the server's host key is unknown or differs from known_hosts. Permanent.
var ErrHostKey = errors.New("ssh host key not trusted")

// ErrAuth: the server refused every offered credential. Permanent.
var ErrAuth = errors.New("ssh authentication refused")

// session is one SSH connection with its SFTP client, shared by all files of an opener.
type session struct {
	sftp *sftp.Client
	ssh  *ssh.Client
	gen  uint64
}

// dialer (re)connects one SSH+SFTP session on demand.
type dialer struct {
	// set once
	addr   string // host:port
	config *ssh.ClientConfig
	opts   Options
	sf     singleflight.Group

	mu   sync.Mutex // guards cur and gen; never held during I/O
	cur  *session
	gen  uint64
	dead bool // a session was lost: the next one counts as a reconnect
}

func newDialer(addr, user string, opts Options) (*dialer, error) {
	var auths []ssh.AuthMethod
	if opts.KeyFile != "" {
		pem, err := os.ReadFile(opts.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("ssh: key file: %w", err)
		}
		signer, err := ssh.ParsePrivateKey(pem)
		if err != nil {
			var pe *ssh.PassphraseMissingError
			if errors.As(err, &pe) {
				return nil, fmt.Errorf("ssh: key file %s is encrypted; give an unencrypted key", opts.KeyFile)
			}
			return nil, fmt.Errorf("ssh: key file %s: %w", opts.KeyFile, err)
		}
		auths = append(auths, ssh.PublicKeys(signer))
	}
	if opts.Password != "" {
		pw := opts.Password
		auths = append(auths, ssh.Password(pw), ssh.KeyboardInteractive(func(name, instr string, qs []string, echos []bool) ([]string, error) {
			ans := make([]string, len(qs))
			for i := range ans {
				ans[i] = pw
			}
			return ans, nil
		}))
	}
	if len(auths) == 0 {
		return nil, fmt.Errorf("ssh: no credentials: set a key file or a password (environment or file)")
	}
	hk, err := hostKeyCallback(opts)
	if err != nil {
		return nil, err
	}
	cfg := &ssh.ClientConfig{User: user, Auth: auths, HostKeyCallback: hk, Timeout: opts.StallTimeout}
	return &dialer{addr: addr, config: cfg, opts: opts}, nil
}

func hostKeyCallback(opts Options) (ssh.HostKeyCallback, error) {
	if opts.InsecureIgnoreHostKey {
		return ssh.InsecureIgnoreHostKey(), nil
	}
	file := opts.KnownHostsFile
	if file == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return nil, fmt.Errorf("ssh: no known_hosts file given and no home folder: %w", err)
		}
		file = filepath.Join(home, ".ssh", "known_hosts")
	}
	cb, err := knownhosts.New(file)
	if err != nil {
		return nil, fmt.Errorf("ssh: known_hosts %s: %w (add the host key there, or choose the insecure option explicitly)", file, err)
	}
	return func(host string, remote net.Addr, key ssh.PublicKey) error {
		err := cb(host, remote, key)
		var ke *knownhosts.KeyError
		if errors.As(err, &ke) {
			fp := ssh.FingerprintSHA256(key)
			if len(ke.Want) == 0 {
				return fmt.Errorf("%w: %s offered %s key %s, which is not in %s", ErrHostKey, host, key.Type(), fp, file)
			}
			return fmt.Errorf("%w: %s offered %s key %s, which DIFFERS from the key in %s line %d (possible man-in-the-middle)", ErrHostKey, host, key.Type(), fp, ke.Want[0].Filename, ke.Want[0].Line)
		}
		return err
	}, nil
}

// get returns the live session, dialing one when there is none. Concurrent callers share one
// dial.
func (d *dialer) get(ctx context.Context) (*session, error) {
	if s := d.current(); s != nil {
		return s, nil
	}
	v, err, _ := d.sf.Do("dial", func() (any, error) {
		if s := d.current(); s != nil {
			return s, nil
		}
		return d.dial(ctx)
	})
	if err != nil {
		return nil, err
	}
	return v.(*session), nil
}

func (d *dialer) dial(ctx context.Context) (*session, error) {
	var nd net.Dialer
	cctx, cancel := context.WithTimeout(ctx, d.opts.StallTimeout)
	defer cancel()
	conn, err := nd.DialContext(cctx, "tcp", d.addr)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, retry.Transient(err)
	}
	// Bound the handshake: ssh.NewClientConn has no context.
	stop := context.AfterFunc(cctx, func() { conn.Close() })
	c, chans, reqs, err := ssh.NewClientConn(conn, d.addr, d.config)
	stop()
	if err != nil {
		conn.Close()
		if errors.Is(err, ErrHostKey) {
			return nil, err
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var se *ssh.ServerAuthError
		if errors.As(err, &se) || isAuthFailure(err) {
			return nil, fmt.Errorf("%w for user %s: %v", ErrAuth, d.config.User, err)
		}
		return nil, retry.Transient(err)
	}
	sc := ssh.NewClient(c, chans, reqs)
	fc, err := sftp.NewClient(sc)
	if err != nil {
		sc.Close()
		return nil, retry.Transient(fmt.Errorf("start sftp: %w", err))
	}
	d.mu.Lock()
	d.gen++
	s := &session{sftp: fc, ssh: sc, gen: d.gen}
	d.cur = s
	if d.dead {
		d.dead = false
		d.opts.Stats.AddReconnect()
	}
	d.mu.Unlock()
	return s, nil
}

func isAuthFailure(err error) bool {
	// x/crypto/ssh reports refused credentials with this text and no distinct type.
	return err != nil && strings.Contains(err.Error(), "unable to authenticate")
}

// drop forgets session s (if still current) and closes it, so the next get reconnects.
func (d *dialer) drop(s *session) {
	d.mu.Lock()
	if d.cur == s {
		d.cur = nil
		d.dead = true
	}
	d.mu.Unlock()
	s.sftp.Close()
	s.ssh.Close()
}

// current returns the live session, or nil.
func (d *dialer) current() *session {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cur
}

func (d *dialer) close() {
	d.mu.Lock()
	s := d.cur
	d.cur = nil
	d.mu.Unlock()
	if s != nil {
		s.sftp.Close()
		s.ssh.Close()
	}
}
