package sftpsrc

import (
	"errors"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/pkg/sftp"

	"github.com/h2kvm/h2kvm/vfs/source/sourcetest"
)

// Files of the in-process SSH server, served read-only from the real file system by handlers
// that fail every read (SSH_FX_FAILURE) or hold it, on demand.
func TestContract(t *testing.T) {
	sourcetest.Run(t, func(t *testing.T, content []byte) sourcetest.Fixture {
		srv := startSSH(t)
		fs := &faultFS{}
		srv.serveHandlers(sftp.Handlers{FileGet: fs, FilePut: fs, FileCmd: fs, FileList: fs})
		first := srv.url("esx", sourcetest.WriteFile(t, "disk.bin", content))
		o, err := NewOpener(first, Options{Password: testPassword, KnownHostsFile: srv.knownHosts(t), Retry: fastRetry})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { o.Close() })
		return sourcetest.Fixture{Opener: o, Name: first, Self: "disk.bin", Missing: "missing.bin", Attempts: fastRetry.Attempts,
			Fail: fs.fail.Store, Stall: fs.stall}
	})
}

// faultFS serves the local file system read-only through sftp's request server.
type faultFS struct {
	fail atomic.Bool

	mu   sync.Mutex
	hold chan struct{} // while not nil, reads wait for it to close
}

// stall makes reads wait (on) or lets them go (off).
func (f *faultFS) stall(on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case on && f.hold == nil:
		f.hold = make(chan struct{})
	case !on && f.hold != nil:
		close(f.hold)
		f.hold = nil
	}
}

var errInjected = errors.New("injected read failure")

func (f *faultFS) Fileread(r *sftp.Request) (io.ReaderAt, error) {
	file, err := os.Open(r.Filepath)
	if err != nil {
		return nil, err
	}
	return faultFile{file, f}, nil
}

func (f *faultFS) Filewrite(r *sftp.Request) (io.WriterAt, error) {
	return nil, sftp.ErrSSHFxPermissionDenied
}

func (f *faultFS) Filecmd(r *sftp.Request) error { return sftp.ErrSSHFxPermissionDenied }

func (f *faultFS) Filelist(r *sftp.Request) (sftp.ListerAt, error) {
	if r.Method != "Stat" && r.Method != "Lstat" {
		return nil, sftp.ErrSSHFxOpUnsupported
	}
	fi, err := os.Stat(r.Filepath)
	if err != nil {
		return nil, err
	}
	return lister{fi}, nil
}

// faultFile is an open file whose reads fail while its file system's fail is set; the request
// server closes it.
type faultFile struct {
	*os.File
	fs *faultFS
}

func (f faultFile) ReadAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	hold := f.fs.hold
	f.fs.mu.Unlock()
	if hold != nil {
		<-hold
	}
	if f.fs.fail.Load() {
		return 0, errInjected
	}
	return f.File.ReadAt(p, off)
}

type lister []os.FileInfo

func (l lister) ListAt(out []os.FileInfo, off int64) (int, error) {
	if off >= int64(len(l)) {
		return 0, io.EOF
	}
	n := copy(out, l[off:])
	if n < len(out) {
		return n, io.EOF
	}
	return n, nil
}
