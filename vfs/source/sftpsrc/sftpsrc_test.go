package sftpsrc

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/h2kvm/h2kvm/vfs"
	"github.com/h2kvm/h2kvm/vfs/source/retry"
)

const testPassword = "pa55-word"

// sshServer is an in-process SSH server with an SFTP subsystem serving the real file system.
type sshServer struct {
	addr     string
	hostKey  ssh.PublicKey
	clientPK ssh.PublicKey // accepted public key
	keyFile  string        // its private key, PEM
	ln       net.Listener

	mu       sync.Mutex
	conns    []net.Conn
	handlers *sftp.Handlers // when set, serve these instead of the real file system
}

// serveHandlers makes later sessions serve h (set it before the first connection).
func (s *sshServer) serveHandlers(h sftp.Handlers) {
	s.mu.Lock()
	s.handlers = &h
	s.mu.Unlock()
}

func startSSH(t *testing.T) *sshServer {
	t.Helper()
	_, hpriv, _ := ed25519.GenerateKey(rand.Reader)
	hsigner, _ := ssh.NewSignerFromKey(hpriv)
	cpub, cpriv, _ := ed25519.GenerateKey(rand.Reader)
	cssh, _ := ssh.NewPublicKey(cpub)
	block, err := ssh.MarshalPrivateKey(cpriv, "")
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "id_ed25519")
	os.WriteFile(keyFile, pem.EncodeToMemory(block), 0o600)

	s := &sshServer{hostKey: hsigner.PublicKey(), clientPK: cssh, keyFile: keyFile}
	cfg := &ssh.ServerConfig{
		PasswordCallback: func(c ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) {
			if c.User() == "esx" && string(pw) == testPassword {
				return nil, nil
			}
			return nil, errors.New("denied")
		},
		PublicKeyCallback: func(c ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
			if bytes.Equal(k.Marshal(), cssh.Marshal()) {
				return nil, nil
			}
			return nil, errors.New("denied")
		},
	}
	cfg.AddHostKey(hsigner)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.ln, s.addr = ln, ln.Addr().String()
	t.Cleanup(func() { ln.Close(); s.dropAll() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			go s.serve(c, cfg)
		}
	}()
	return s
}

func (s *sshServer) serve(c net.Conn, cfg *ssh.ServerConfig) {
	_, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		c.Close()
		return
	}
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.UnknownChannelType, "no")
			continue
		}
		ch, in, err := nc.Accept()
		if err != nil {
			continue
		}
		go func() {
			for req := range in {
				ok := req.Type == "subsystem" && len(req.Payload) > 4 && string(req.Payload[4:]) == "sftp"
				req.Reply(ok, nil)
				if ok {
					s.mu.Lock()
					h := s.handlers
					s.mu.Unlock()
					if h != nil {
						srv := sftp.NewRequestServer(ch, *h)
						srv.Serve()
						srv.Close()
					} else if srv, err := sftp.NewServer(ch, sftp.ReadOnly()); err == nil {
						srv.Serve()
						srv.Close()
					}
					ch.Close()
				}
			}
		}()
	}
}

// dropAll cuts every connection, as a network failure would.
func (s *sshServer) dropAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.Close()
	}
	s.conns = nil
}

func (s *sshServer) knownHosts(t *testing.T) string {
	f := filepath.Join(t.TempDir(), "known_hosts")
	line := knownhosts.Line([]string{knownhosts.Normalize(s.addr)}, s.hostKey)
	os.WriteFile(f, []byte(line+"\n"), 0o600)
	return f
}

var fastRetry = retry.Policy{Attempts: 5, BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond, MaxElapsed: 10 * time.Second}

func testFiles(t *testing.T) (dir string, data []byte) {
	dir = t.TempDir()
	data = make([]byte, 1<<20+333)
	r := mrand.New(mrand.NewPCG(1, 1))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	os.MkdirAll(filepath.Join(dir, "vm"), 0o755)
	os.WriteFile(filepath.Join(dir, "vm", "disk-flat.vmdk"), data, 0o600)
	os.WriteFile(filepath.Join(dir, "secret"), []byte("x"), 0o600)
	return dir, data
}

func (s *sshServer) url(user, p string) string {
	return fmt.Sprintf("ssh://%s@%s%s", user, s.addr, p)
}

func readEverything(t *testing.T, src vfs.Source, data []byte) {
	t.Helper()
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := mrand.New(mrand.NewPCG(uint64(g), 2))
			for range 15 {
				off := r.Int64N(int64(len(data)))
				p := make([]byte, r.IntN(200000)+1)
				n, err := src.ReadAt(context.Background(), p, off)
				end := min(off+int64(len(p)), int64(len(data)))
				if int64(n) != end-off || !bytes.Equal(p[:n], data[off:end]) {
					t.Errorf("read %d at %d: n=%d err=%v", len(p), off, n, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestPasswordAndParallelReads(t *testing.T) {
	srv := startSSH(t)
	dir, data := testFiles(t)
	first := srv.url("esx", filepath.Join(dir, "vm", "disk-flat.vmdk"))
	o, err := NewOpener(first, Options{Password: testPassword, KnownHostsFile: srv.knownHosts(t), Retry: fastRetry})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	src, err := o.Open(context.Background(), first)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if src.Size() != int64(len(data)) || strings.Contains(src.Name(), testPassword) {
		t.Fatalf("size %d name %s", src.Size(), src.Name())
	}
	readEverything(t, src, data)
	if st := o.Stats(); st.BytesFetched == 0 || st.Requests < 90 {
		t.Fatalf("stats %+v", st)
	}
	// Reconnect after every connection is cut.
	srv.dropAll()
	readEverything(t, src, data)
	if st := o.Stats(); st.Reconnects == 0 || st.Retries == 0 {
		t.Fatalf("no reconnect after the connection was cut: %+v", st)
	} else {
		t.Logf("stats %+v", st)
	}
	// Resolution stays in the first file's folder.
	if _, err := o.Resolve(first, "../secret"); !errors.Is(err, vfs.ErrChain) {
		t.Fatalf("escape allowed: %v", err)
	}
	n, err := o.Resolve(first, "missing.vmdk")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.Open(context.Background(), n); !errors.Is(err, vfs.ErrNotFound) {
		t.Fatalf("want ErrNotFound, got %v", err)
	}
}

func TestKeyFile(t *testing.T) {
	srv := startSSH(t)
	dir, data := testFiles(t)
	first := srv.url("anyone", filepath.Join(dir, "vm", "disk-flat.vmdk"))
	o, err := NewOpener(first, Options{KeyFile: srv.keyFile, KnownHostsFile: srv.knownHosts(t), Retry: fastRetry})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	src, err := o.Open(context.Background(), first)
	if err != nil {
		t.Fatal(err)
	}
	p := make([]byte, 1000)
	if err := vfs.ReadFull(context.Background(), src, p, 77); err != nil || !bytes.Equal(p, data[77:1077]) {
		t.Fatal(err)
	}
}

func TestRefusals(t *testing.T) {
	srv := startSSH(t)
	dir, _ := testFiles(t)
	first := srv.url("esx", filepath.Join(dir, "vm", "disk-flat.vmdk"))
	ctx := context.Background()
	open := func(o Options) error {
		o.Retry = fastRetry
		op, err := NewOpener(first, o)
		if err != nil {
			return err
		}
		defer op.Close()
		_, err = op.Open(ctx, first)
		return err
	}
	empty := filepath.Join(t.TempDir(), "known_hosts")
	os.WriteFile(empty, nil, 0o600)
	err := open(Options{Password: testPassword, KnownHostsFile: empty})
	if !errors.Is(err, ErrHostKey) || !strings.Contains(err.Error(), "not in") || errors.Is(err, vfs.ErrTransient) {
		t.Fatalf("unknown host key: %v", err)
	}
	t.Log(err)
	other := filepath.Join(t.TempDir(), "known_hosts")
	_, opriv, _ := ed25519.GenerateKey(rand.Reader)
	osig, _ := ssh.NewSignerFromKey(opriv)
	os.WriteFile(other, []byte(knownhosts.Line([]string{knownhosts.Normalize(srv.addr)}, osig.PublicKey())+"\n"), 0o600)
	if err := open(Options{Password: testPassword, KnownHostsFile: other}); !errors.Is(err, ErrHostKey) || !strings.Contains(err.Error(), "DIFFERS") {
		t.Fatalf("changed host key: %v", err)
	}
	if err := open(Options{Password: testPassword, KnownHostsFile: empty, InsecureIgnoreHostKey: true}); err != nil {
		t.Fatalf("insecure: %v", err)
	}
	err = open(Options{Password: "wrong", KnownHostsFile: srv.knownHosts(t)})
	if !errors.Is(err, ErrAuth) || strings.Contains(err.Error(), "wrong") || errors.Is(err, vfs.ErrTransient) {
		t.Fatalf("wrong password: %v", err)
	}
	t.Log(err)
	if _, err := NewOpener("ssh://esx:pw@h/x", Options{Password: "x"}); err == nil || strings.Contains(err.Error(), "pw@") {
		t.Fatalf("password in URL: %v", err)
	}
	if _, err := NewOpener(first, Options{KnownHostsFile: empty}); err == nil {
		t.Fatal("no credentials accepted")
	}
}
