package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestServeHelpDocumentsNBDFlags(t *testing.T) {
	code, out, _ := runCLI(t, context.Background(), "serve", "--help")
	if code != 0 {
		t.Fatalf("serve --help: exit %d", code)
	}
	for _, want := range []string{"--tls-cert", "--tls-key", "--tls-ca", "--nbd-insecure-tcp", "--nbd-max-conns",
		"--nbd-max-buffer", "--nbd-write-timeout", "PSK"} {
		if !strings.Contains(out, want) {
			t.Errorf("serve --help lacks %q", want)
		}
	}
}

// writeServerPKI writes a CA and a server certificate for 127.0.0.1: cert and key for
// --tls-cert/--tls-key, and dir with ca-cert.pem for clients.
func writeServerPKI(t *testing.T) (cert, key, dir string) {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey, srvKey := newKey(), newKey()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	srvTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(srvKey)
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	dir = filepath.Join(tmp, "client")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	write := func(path, typ string, der []byte) {
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cert, key = filepath.Join(tmp, "server-cert.pem"), filepath.Join(tmp, "server-key.pem")
	write(cert, "CERTIFICATE", srvDER)
	write(key, "PRIVATE KEY", keyDER)
	write(filepath.Join(dir, "ca-cert.pem"), "CERTIFICATE", caDER)
	return cert, key, dir
}

// startServe runs `h2kvm serve` with a writable export "rw" on a loopback TCP port and the
// extra args; it returns the port once it accepts.
func startServe(t *testing.T, args ...string) string {
	t.Helper()
	for _, tool := range []string{"qemu-img", "nbdinfo"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk.vmdk")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "vmdk", disk, "4M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v\n%s", err, out)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		code, _, errOut := runCLI(t, ctx, append([]string{"serve", "--state-dir", filepath.Join(dir, "state"),
			"--nbd-listen", addr, "--export", "rw=" + disk}, args...)...)
		if code != 0 {
			t.Logf("serve: exit %d\n%s", code, errOut)
		}
		done <- code
	}()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("serve exit %d after SIGINT-like cancel", code)
		}
	})
	for deadline := time.Now().Add(30 * time.Second); ; {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		select {
		case code := <-done:
			done <- code // for the cleanup
			t.Fatalf("serve exited with %d before listening on %s", code, addr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not listen on %s", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	_, port, _ := net.SplitHostPort(addr)
	return port
}

func nbdinfo(uri string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "nbdinfo", "--json", uri).CombinedOutput()
	return string(out), err
}

// `serve --nbd-listen` with --tls-cert/--tls-key serves the writable export over TLS only.
func TestServeTLS(t *testing.T) {
	cert, key, clientDir := writeServerPKI(t)
	port := startServe(t, "--tls-cert", cert, "--tls-key", key)
	if out, err := nbdinfo("nbd://127.0.0.1:" + port + "/rw"); err == nil {
		t.Errorf("plain TCP client served although TLS is configured:\n%s", out)
	}
	out, err := nbdinfo("nbds://127.0.0.1:" + port + "/rw?tls-certificates=" + clientDir)
	if err != nil || !strings.Contains(out, `"is_read_only": false`) {
		t.Errorf("nbdinfo over TLS: %v\n%s", err, out)
	}
}

// Without TLS the writable export is refused on TCP unless --nbd-insecure-tcp.
func TestServeWritableTCPNeedsTLSOrInsecure(t *testing.T) {
	port := startServe(t)
	if out, err := nbdinfo("nbd://127.0.0.1:" + port + "/rw"); err == nil {
		t.Errorf("writable export served over plain TCP:\n%s", out)
	}
	port = startServe(t, "--nbd-insecure-tcp")
	if out, err := nbdinfo("nbd://127.0.0.1:" + port + "/rw"); err != nil || !strings.Contains(out, `"is_read_only": false`) {
		t.Errorf("--nbd-insecure-tcp: %v\n%s", err, out)
	}
}

func TestServeTLSFlagErrors(t *testing.T) {
	cert, _, _ := writeServerPKI(t)
	for _, args := range [][]string{
		{"--tls-cert", cert},
		{"--nbd-max-conns", "0"},
	} {
		code, _, errOut := runCLI(t, context.Background(), append([]string{"serve", "--state-dir", t.TempDir(), "--nbd-socket", filepath.Join(t.TempDir(), "s")}, args...)...)
		if code != exitBadInput {
			t.Errorf("serve %q: exit %d, want %d\n%s", args, code, exitBadInput, errOut)
		}
	}
}
