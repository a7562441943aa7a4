package httpsrc

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

// TLSOptions choose how server certificates are checked. Verification is on by default.
type TLSOptions struct {
	// CAFile is a PEM file of extra trusted CA certificates (added to the system pool).
	CAFile string
	// Thumbprints pins server certificates by the SHA-1 (40 hex digits) or SHA-256 (64 hex
	// digits) digest of the leaf certificate, colons and case ignored, as vSphere shows them.
	// When set, a certificate matching any pin is accepted without chain verification and any
	// other is refused.
	Thumbprints []string
	// Insecure disables verification entirely. It must be asked for explicitly.
	Insecure bool
}

// CertError is a server certificate that was refused. It carries the certificate's
// thumbprints so that a user can decide to pin it.
type CertError struct {
	Host   string
	SHA1   string
	SHA256 string
	Err    error
}

func (e *CertError) Error() string {
	return fmt.Sprintf("tls: certificate of %s refused: %v (its SHA-256 thumbprint is %s, SHA-1 %s; trust it with a CA file or pin a thumbprint)", e.Host, e.Err, e.SHA256, e.SHA1)
}

func (e *CertError) Unwrap() error { return e.Err }

// ThumbprintSHA1 returns the colon-separated upper-case SHA-1 digest of a certificate, the form
// vSphere prints.
func ThumbprintSHA1(der []byte) string {
	d := sha1.Sum(der)
	return colonHex(d[:])
}

// ThumbprintSHA256 returns the colon-separated upper-case SHA-256 digest of a certificate.
func ThumbprintSHA256(der []byte) string {
	d := sha256.Sum256(der)
	return colonHex(d[:])
}

func colonHex(b []byte) string {
	var sb strings.Builder
	for i, c := range b {
		if i > 0 {
			sb.WriteByte(':')
		}
		fmt.Fprintf(&sb, "%02X", c)
	}
	return sb.String()
}

// normalizePin returns the lower-case hex of a pin without separators.
func normalizePin(p string) (string, error) {
	s := strings.ToLower(strings.NewReplacer(":", "", " ", "", "-", "").Replace(strings.TrimSpace(p)))
	if _, err := hex.DecodeString(s); err != nil || (len(s) != 40 && len(s) != 64) {
		return "", fmt.Errorf("tls: thumbprint %q is neither a SHA-1 (40 hex digits) nor a SHA-256 (64 hex digits) digest", p)
	}
	return s, nil
}

// TLSConfig builds the client TLS configuration of o for connections to serverName (a host
// name or an IP address, checked against the certificate). Certificates are verified in
// VerifyConnection so that a refusal is a *CertError naming the thumbprints.
func TLSConfig(o TLSOptions, serverName string) (*tls.Config, error) {
	pins := make(map[string]bool)
	for _, p := range o.Thumbprints {
		n, err := normalizePin(p)
		if err != nil {
			return nil, err
		}
		pins[n] = true
	}
	var roots *x509.CertPool
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls: CA file: %w", err)
		}
		roots, err = x509.SystemCertPool()
		if err != nil || roots == nil {
			roots = x509.NewCertPool()
		}
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls: CA file %s holds no PEM certificate", o.CAFile)
		}
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if o.Insecure && len(pins) == 0 {
		cfg.InsecureSkipVerify = true
		return cfg, nil
	}
	// Verification is done below, by hand, so it can report thumbprints and honour pins.
	cfg.InsecureSkipVerify = true
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return &CertError{Host: serverName, Err: errors.New("server sent no certificate")}
		}
		leaf := cs.PeerCertificates[0]
		s1, s256 := sha1.Sum(leaf.Raw), sha256.Sum256(leaf.Raw)
		certErr := func(err error) error {
			return &CertError{Host: serverName, SHA1: colonHex(s1[:]), SHA256: colonHex(s256[:]), Err: err}
		}
		if len(pins) > 0 {
			if pins[hex.EncodeToString(s1[:])] || pins[hex.EncodeToString(s256[:])] {
				return nil
			}
			return certErr(errors.New("thumbprint matches none of the pinned thumbprints"))
		}
		if serverName == "" {
			return certErr(errors.New("no server name to check the certificate against"))
		}
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		_, err := leaf.Verify(x509.VerifyOptions{DNSName: serverName, Roots: roots, Intermediates: inter})
		if err != nil {
			return certErr(err)
		}
		return nil
	}
	return cfg, nil
}

// NewTransport returns an HTTP transport with the TLS policy o, keep-alive, and enough idle
// connections per host for parallel range requests. Proxies come from the environment.
func NewTransport(o TLSOptions) (*http.Transport, error) {
	// The config used through a proxy (CONNECT) knows no server name and refuses unless
	// pinned; direct connections get one config per host from DialTLSContext.
	proxied, err := TLSConfig(o, "")
	if err != nil {
		return nil, err
	}
	d := &net.Dialer{Timeout: 15 * time.Second, KeepAlive: 30 * time.Second}
	dialTLS := func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		cfg, err := TLSConfig(o, host)
		if err != nil {
			return nil, err
		}
		raw, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		c := tls.Client(raw, cfg)
		hctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		if err := c.HandshakeContext(hctx); err != nil {
			raw.Close()
			return nil, err
		}
		return c, nil
	}
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           d.DialContext,
		DialTLSContext:        dialTLS,
		TLSClientConfig:       proxied,
		TLSHandshakeTimeout:   15 * time.Second,
		MaxIdleConns:          64,
		MaxIdleConnsPerHost:   32,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
	}, nil
}
