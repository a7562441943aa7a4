package nbdserve

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// ListenUnix listens on a unix socket at path, created with mode 0600 (only the owner may
// connect). The socket is bound under a private temporary name and renamed into place, so it
// is never reachable with wider permissions. A stale socket at path (nobody listening) is
// replaced; a live one, or any other file, is an error. Closing the listener removes path.
func ListenUnix(path string) (net.Listener, error) {
	if st, err := os.Lstat(path); err == nil {
		if st.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("nbd: listen %s: exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("nbd: listen %s: a server is already listening there", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("nbd: listen %s: remove stale socket: %w", path, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("nbd: listen %s: %w", path, err)
	}
	dir, err := os.MkdirTemp(filepath.Dir(path), ".nbd-sock-")
	if err != nil {
		return nil, fmt.Errorf("nbd: listen %s: %w", path, err)
	}
	defer os.RemoveAll(dir) // mode 0700: nobody else can reach the socket while it is here
	tmp := filepath.Join(dir, "s")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("nbd: listen %s: %w", path, err)
	}
	l.SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("nbd: listen %s: chmod: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		l.Close()
		return nil, fmt.Errorf("nbd: listen %s: %w", path, err)
	}
	return &unixListener{UnixListener: l, path: path}, nil
}

// unixListener removes its socket file when closed.
type unixListener struct {
	*net.UnixListener
	path string
}

func (l *unixListener) Close() error {
	err := l.UnixListener.Close()
	if !errors.Is(err, net.ErrClosed) {
		os.Remove(l.path)
	}
	return err
}

func (l *unixListener) Addr() net.Addr { return &net.UnixAddr{Name: l.path, Net: "unix"} }

// ListenLoopback listens on TCP port on 127.0.0.1 (port 0 picks a free port; 10809 is the NBD
// port). Loopback is not private: every local user, and a guest whose user-mode network maps
// the host's loopback, can connect (see Options.InsecureTCPWrites). Serving beyond loopback is
// the caller's decision, and should use Options.TLSConfig with RequireTLSOnTCP and client
// certificates.
func ListenLoopback(port int) (net.Listener, error) {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return nil, fmt.Errorf("nbd: listen on loopback: %w", err)
	}
	return l, nil
}
