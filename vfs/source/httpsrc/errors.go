package httpsrc

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/h2kvm/h2kvm/vfs"
	"github.com/h2kvm/h2kvm/vfs/source/retry"
)

// StatusError is an HTTP status the source did not expect. 408, 429 and 5xx are transient
// (errors.Is(err, vfs.ErrTransient)); 404 and 410 wrap vfs.ErrNotFound; the rest are permanent.
type StatusError struct {
	Code   int
	Status string
	after  time.Duration
}

func (e *StatusError) Error() string { return "server answered " + e.Status }

// RetryAfter returns the wait the server asked for in a Retry-After header (0 if none).
func (e *StatusError) RetryAfter() time.Duration { return e.after }

func statusError(resp *http.Response) error {
	e := &StatusError{Code: resp.StatusCode, Status: resp.Status}
	if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs > 0 {
		e.after = time.Duration(secs) * time.Second
	}
	switch {
	case e.Code == http.StatusNotFound || e.Code == http.StatusGone:
		return fmt.Errorf("%w: %w", e, vfs.ErrNotFound)
	case e.Code == http.StatusUnauthorized || e.Code == http.StatusForbidden:
		return fmt.Errorf("%w (access denied; check the credentials)", e)
	case e.Code == http.StatusRequestTimeout || e.Code == http.StatusTooManyRequests || e.Code >= 500:
		return retry.Transient(e)
	}
	return e
}

// Classify marks a transport error transient unless retrying cannot help: a refused
// certificate, a TLS protocol mismatch, a host name that does not exist.
func Classify(err error) error {
	var ce *CertError
	var ue x509.UnknownAuthorityError
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	var rh tls.RecordHeaderError
	var dns *net.DNSError
	switch {
	case errors.As(err, &ce), errors.As(err, &ue), errors.As(err, &he), errors.As(err, &ci):
		return err
	case errors.As(err, &rh):
		return fmt.Errorf("%w (is the server speaking TLS?)", err)
	case errors.As(err, &dns) && dns.IsNotFound:
		return err
	}
	return retry.Transient(err)
}
