package nbdserve

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/h2kvm/h2kvm/vfs"
)

func TestToNBDError(t *testing.T) {
	for _, c := range []struct {
		err  error
		want uint32
	}{
		{nil, 0},
		{fmt.Errorf("mem: x: %w", vfs.ErrOutOfRange), einval},
		{fmt.Errorf("overlay: %w", vfs.ErrReadOnly), eperm},
		{fmt.Errorf("vmdk: %w", vfs.ErrUnsupported), enotsup},
		{&os.PathError{Op: "write", Path: "f", Err: syscall.ENOSPC}, enospc},
		{fmt.Errorf("x: %w", syscall.EDQUOT), enospc},
		{fmt.Errorf("x: %w", syscall.EOVERFLOW), eoverflow},
		{fmt.Errorf("x: %w", syscall.EPERM), eperm},
		{context.Canceled, eshutdown},
		{fmt.Errorf("fetch: %w", context.DeadlineExceeded), eio},
		{fmt.Errorf("vmdk: %w", vfs.ErrCorrupt), eio},
		{errors.New("anything"), eio},
	} {
		if got := toNBDError(c.err); got != c.want {
			t.Errorf("toNBDError(%v) = %d, want %d", c.err, got, c.want)
		}
	}
}

func TestListenUnix(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s.sock")
	l, err := ListenUnix(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Type() != fs.ModeSocket || st.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v", st.Mode())
	}
	if _, err := ListenUnix(path); err == nil {
		t.Error("second listener on a live socket succeeded")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("stray files: %v", entries)
	}
	l.Close()
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket left after Close: %v", err)
	}
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ListenUnix(path); err == nil {
		t.Error("listening over a regular file succeeded")
	}
}

// TestDiscDrains checks that DISC lets requests in flight finish and be answered.
func TestDiscDrains(t *testing.T) {
	ts := startServer(t, Options{})
	gd := &gateDevice{MemDevice: newTestDevice(t), gate: make(chan struct{}), started: make(chan struct{}, 1)}
	if err := ts.AddExport("slow", gd, ExportOptions{ReadOnly: true}); err != nil {
		t.Fatal(err)
	}
	rc := connectRaw(t, ts, "slow", false)
	rc.request(cmdRead, 0, 1, 0, 4096, nil)
	<-gd.started
	rc.request(cmdDisc, 0, 2, 0, 0, nil)
	time.Sleep(50 * time.Millisecond)
	close(gd.gate)
	data, errno := rc.readReply(0, 4096)
	if errno != 0 || !bytes.Equal(data, deviceBytes(t, gd.MemDevice)[:4096]) {
		t.Fatalf("reply after DISC: errno %d", errno)
	}
	rc.expectClosed()
}

func TestShutdownDrainsAndRemoveExport(t *testing.T) {
	ts := startServer(t, Options{})
	gd := &gateDevice{MemDevice: newTestDevice(t), gate: make(chan struct{}), started: make(chan struct{}, 1)}
	if err := ts.AddExport("slow", gd, ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	gone := &gateDevice{MemDevice: newTestDevice(t), gate: make(chan struct{}), started: make(chan struct{}, 1)}
	if err := ts.AddExport("gone", gone, ExportOptions{ReadOnly: true}); err != nil {
		t.Fatal(err)
	}
	// RemoveExport cuts its connections and cancels their requests.
	rg := connectRaw(t, ts, "gone", false)
	rg.request(cmdRead, 0, 1, 0, 4096, nil)
	<-gone.started
	if err := ts.RemoveExport("gone"); err != nil {
		t.Fatal(err)
	}
	rg.expectClosed()
	if err := ts.RemoveExport("gone"); !errors.Is(err, ErrNoExport) {
		t.Errorf("second remove: %v", err)
	}

	rc := connectRaw(t, ts, "slow", false)
	rc.request(cmdRead, 0, 1, 0, 4096, nil)
	<-gd.started
	var wg sync.WaitGroup
	wg.Add(1)
	var serr error
	go func() {
		defer wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		serr = ts.Shutdown(ctx)
	}()
	time.Sleep(50 * time.Millisecond)
	close(gd.gate)
	if _, errno := rc.readReply(0, 4096); errno != 0 {
		t.Errorf("read in flight at shutdown: %d", errno)
	}
	rc.expectClosed()
	wg.Wait()
	if serr != nil {
		t.Fatal(serr)
	}
	if gd.flushes.Load() == 0 {
		t.Error("shutdown did not flush the writable export")
	}
}

func TestStartTLS(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	ts := startServer(t, Options{TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, RequireTLS: true})
	dev := newTestDevice(t)
	if err := ts.AddExport("ro", dev, ExportOptions{ReadOnly: true}); err != nil {
		t.Fatal(err)
	}
	rc := newRawClient(t, ts.dial(t))
	rc.greet(flagCFixedNewstyle | flagCNoZeroes)
	rc.sendOpt(optGo, infoData("ro"))
	rc.expectOptReply(optGo, repErrTLSReqd)
	rc.sendOpt(optStartTLS, nil)
	rc.expectOptReply(optStartTLS, repAck)
	pool := x509.NewCertPool()
	leaf, _ := x509.ParseCertificate(der)
	pool.AddCert(leaf)
	tc := tls.Client(rc.c, &tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	rc.c = tc
	rc.sendOpt(optStartTLS, nil)
	rc.expectOptReply(optStartTLS, repErrInvalid)
	rc.sendOpt(optStructuredReply, nil)
	rc.expectOptReply(optStructuredReply, repAck)
	rc.structured = true
	rc.goExport("ro")
	rc.request(cmdRead, 0, 1, 0, 1<<20, nil)
	if data, errno := rc.readReply(0, 1<<20); errno != 0 || !bytes.Equal(data, deviceBytes(t, dev)[:1<<20]) {
		t.Fatalf("read over TLS: errno %d", errno)
	}
}
