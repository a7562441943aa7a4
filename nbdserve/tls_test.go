package nbdserve

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/h2kvm/h2kvm/internal/testenv"
	"github.com/h2kvm/h2kvm/vfs"
)

// testPKI is a CA with a server certificate for 127.0.0.1 and localhost, and dir, a client
// certificate directory in the layout libnbd (tls-certificates=DIR) and qemu
// (tls-creds-x509,dir=DIR,endpoint=client) read: ca-cert.pem, client-cert.pem, client-key.pem.
type testPKI struct {
	server tls.Certificate
	pool   *x509.CertPool
	dir    string
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	caKey := genKey(t)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), IsCA: true, BasicConstraintsValid: true,
		KeyUsage:  x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	caTmpl.Subject.CommonName = "h2kvm test CA"
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(serial int64, usage x509.ExtKeyUsage) ([]byte, *ecdsa.PrivateKey) {
		key := genKey(t)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), DNSNames: []string{"localhost"},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			KeyUsage:  x509.KeyUsageDigitalSignature,
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
		tmpl.Subject.CommonName = "h2kvm test " + strconv.Itoa(int(serial))
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, key
	}
	srvDER, srvKey := issue(2, x509.ExtKeyUsageServerAuth)
	cliDER, cliKey := issue(3, x509.ExtKeyUsageClientAuth)
	p := &testPKI{server: tls.Certificate{Certificate: [][]byte{srvDER}, PrivateKey: srvKey},
		pool: x509.NewCertPool(), dir: t.TempDir()}
	p.pool.AddCert(ca)
	writePEM(t, filepath.Join(p.dir, "ca-cert.pem"), "CERTIFICATE", caDER)
	writePEM(t, filepath.Join(p.dir, "client-cert.pem"), "CERTIFICATE", cliDER)
	kb, err := x509.MarshalPKCS8PrivateKey(cliKey)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(p.dir, "client-key.pem"), "PRIVATE KEY", kb)
	return p
}

func genKey(t testing.TB) *ecdsa.PrivateKey {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// serverTLS is the server side of p; with verifyClients, clients must present a certificate
// of the CA.
func (p *testPKI) serverTLS(verifyClients bool) *tls.Config {
	cfg := &tls.Config{Certificates: []tls.Certificate{p.server}, MinVersion: tls.VersionTLS12}
	if verifyClients {
		cfg.ClientAuth, cfg.ClientCAs = tls.RequireAndVerifyClientCert, p.pool
	}
	return cfg
}

// startTCPServer is startServer on a loopback TCP port; it returns the server and its port.
func startTCPServer(t testing.TB, opt Options) (*Server, string) {
	t.Helper()
	ts := startServer(t, opt) // the unix socket too: one server, two transports
	l, err := ListenLoopback(0)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- ts.Serve(context.Background(), l) }()
	t.Cleanup(func() {
		l.Close()
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("serve tcp: %v", err)
		}
	})
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return ts.Server, port
}

// A writable export is not served over plain TCP: nbdinfo is refused it (read-only exports
// still work) until it uses TLS.
func TestTCPWritableExportNeedsTLS(t *testing.T) {
	testenv.ToolPath(t, "nbdinfo")
	pki := newTestPKI(t)
	s, port := startTCPServer(t, Options{TLSConfig: pki.serverTLS(false)})
	if err := s.AddExport("rw", vfs.NewMemDevice(1<<20), ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddExport("ro", newTestDevice(t), ExportOptions{ReadOnly: true}); err != nil {
		t.Fatal(err)
	}
	plain := "nbd://127.0.0.1:" + port + "/"
	if out, err := runErr(time.Minute, "nbdinfo", "--size", plain+"rw"); err == nil {
		t.Fatalf("nbdinfo got the writable export over plain TCP: %s", out)
	} else if !strings.Contains(strings.ToLower(out+err.Error()), "tls") {
		t.Errorf("refusal does not mention TLS: %v\n%s", err, out)
	}
	if out := run(t, time.Minute, "nbdinfo", "--size", plain+"ro"); strings.TrimSpace(out) != strconv.Itoa(testDevSize) {
		t.Errorf("read-only export over plain TCP: size %q", out)
	}
	secure := "nbds://127.0.0.1:" + port + "/rw?tls-certificates=" + pki.dir
	if out := run(t, time.Minute, "nbdinfo", "--json", secure); !strings.Contains(out, `"is_read_only": false`) {
		t.Errorf("writable export over TLS:\n%s", out)
	}
}

// qemu as a TLS client with a client certificate: qemu-io writes to a writable export on a
// server that requires TLS on TCP and verifies client certificates; qemu-img reads it back.
// The unix socket of the same server still serves without TLS.
func TestQemuTLSClientCertificate(t *testing.T) {
	testenv.ToolPath(t, "qemu-io")
	testenv.ToolPath(t, "qemu-img")
	pki := newTestPKI(t)
	s, port := startTCPServer(t, Options{TLSConfig: pki.serverTLS(true), RequireTLSOnTCP: true})
	dev := vfs.NewMemDevice(1 << 20)
	if err := s.AddExport("rw", dev, ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	creds := "tls-creds-x509,id=tls0,endpoint=client,dir=" + pki.dir
	image := "driver=nbd,host=127.0.0.1,port=" + port + ",export=rw"
	run(t, time.Minute, "qemu-io", "--object", creds, "--image-opts", image+",tls-creds=tls0",
		"-c", "write -P 0xab 4096 65536", "-c", "flush")
	got := deviceBytes(t, dev)
	for i, b := range got[4096 : 4096+65536] {
		if b != 0xab {
			t.Fatalf("byte %d after the TLS write is %#x", 4096+i, b)
		}
	}
	if out, err := runErr(time.Minute, "qemu-img", "info", "--image-opts", image); err == nil {
		t.Fatalf("qemu-img connected over TCP without TLS to a server requiring it:\n%s", out)
	}
	// Without a client certificate the TLS handshake itself is refused.
	noCert := t.TempDir()
	ca, err := os.ReadFile(filepath.Join(pki.dir, "ca-cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(noCert, "ca-cert.pem"), ca, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := runErr(time.Minute, "qemu-img", "info", "--object", "tls-creds-x509,id=tls0,endpoint=client,dir="+noCert,
		"--image-opts", image+",tls-creds=tls0"); err == nil {
		t.Fatalf("qemu-img without a client certificate was served:\n%s", out)
	}
}

// InsecureTCPWrites restores plain TCP for writable exports.
func TestInsecureTCPWrites(t *testing.T) {
	testenv.ToolPath(t, "nbdinfo")
	s, port := startTCPServer(t, Options{InsecureTCPWrites: true})
	if err := s.AddExport("rw", vfs.NewMemDevice(1<<20), ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	if out := run(t, time.Minute, "nbdinfo", "--json", "nbd://127.0.0.1:"+port+"/rw"); !strings.Contains(out, `"is_read_only": false`) {
		t.Errorf("writable export over plain TCP with InsecureTCPWrites:\n%s", out)
	}
}

// Old-style EXPORT_NAME cannot be answered with an error: a plain TCP client asking it for a
// writable export is disconnected, one asking for a read-only export is served.
func TestTCPExportNameWritableClosed(t *testing.T) {
	s, port := startTCPServer(t, Options{})
	if err := s.AddExport("rw", vfs.NewMemDevice(1<<20), ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddExport("ro", vfs.NewMemDevice(1<<20), ExportOptions{ReadOnly: true}); err != nil {
		t.Fatal(err)
	}
	dial := func() *rawClient {
		c, err := net.Dial("tcp", "127.0.0.1:"+port)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		rc := newRawClient(t, c)
		rc.greet(flagCFixedNewstyle | flagCNoZeroes)
		return rc
	}
	rc := dial()
	rc.sendOpt(optExportName, []byte("rw"))
	rc.expectClosed()
	rc = dial()
	rc.sendOpt(optExportName, []byte("ro"))
	if b := rc.read(10); binary.BigEndian.Uint64(b) != 1<<20 {
		t.Fatalf("EXPORT_NAME ro: reply % x", b)
	}
}
