package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/h2kvm/h2kvm/vfs/source"
)

// Embedded is a daemon run inside this process, for commands that need an NBD export of a
// SOURCE and were given no running daemon. Its NBD socket lives in a private folder.
type Embedded struct {
	*Daemon
	// Socket is the NBD unix socket; NBDURI gives an export's URI on it.
	Socket string

	dir     string
	cancel  context.CancelFunc
	stopped chan struct{} // closed when Run returned; runErr is set then
	runErr  error
}

// EmbeddedOptions configure StartEmbedded.
type EmbeddedOptions struct {
	// StateDir keeps the store, caches and overlays; empty means a temporary folder removed by
	// Close.
	StateDir   string
	CacheLimit int64
	// Source configures the sources (credentials, TLS, timeouts); the caller builds it, from
	// the environment in the CLI.
	Source source.Config
	Logger *slog.Logger
}

// StartEmbedded starts a daemon serving NBD on a private unix socket.
func StartEmbedded(ctx context.Context, opt EmbeddedOptions) (*Embedded, error) {
	dir, err := os.MkdirTemp("", "h2kvm-")
	if err != nil {
		return nil, err
	}
	state := opt.StateDir
	if state == "" {
		state = filepath.Join(dir, "state")
	}
	log := opt.Logger
	if log == nil {
		log = slog.Default()
	}
	// The embedded daemon is a detail of the command: its routine messages (serving, shutting
	// down) are noise unless the user asked for debug output.
	if !log.Enabled(ctx, slog.LevelDebug) {
		log = slog.New(minLevel{log.Handler(), slog.LevelWarn})
	}
	sock := filepath.Join(dir, "nbd.sock")
	d, err := New(ctx, Config{StateDir: state, NBDSocket: sock, CacheLimit: opt.CacheLimit, Source: opt.Source, Logger: log})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	e := &Embedded{Daemon: d, Socket: sock, dir: dir, cancel: cancel, stopped: make(chan struct{})}
	go func() {
		e.runErr = d.Run(rctx)
		close(e.stopped)
	}()
	if err := waitSocket(ctx, sock, e.stopped, &e.runErr); err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

// NBDURI returns the URI of export name on the embedded daemon's socket.
func (e *Embedded) NBDURI(name string) string {
	return fmt.Sprintf("nbd+unix:///%s?socket=%s", name, e.Socket)
}

// Close stops the daemon (flushing overlays) and removes its private folder.
func (e *Embedded) Close() error {
	e.cancel()
	<-e.stopped
	return errors.Join(e.runErr, os.RemoveAll(e.dir))
}

// minLevel drops records below a level.
type minLevel struct {
	slog.Handler
	level slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.level && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(as), h.level}
}

func (h minLevel) WithGroup(name string) slog.Handler {
	return minLevel{h.Handler.WithGroup(name), h.level}
}

// waitSocket waits until a unix socket accepts connections, or until stopped is closed, when
// *runErr says why.
func waitSocket(ctx context.Context, path string, stopped <-chan struct{}, runErr *error) error {
	for i := 0; ; i++ {
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil
		}
		select {
		case <-stopped:
			err := *runErr
			if err == nil {
				err = errors.New("stopped")
			}
			return fmt.Errorf("embedded daemon: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if i > 500 {
			return fmt.Errorf("embedded daemon: %s does not accept connections", path)
		}
	}
}
