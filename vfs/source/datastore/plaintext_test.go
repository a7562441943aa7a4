package datastore

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/h2kvm/h2kvm/vfs/source/httpsrc"
	"github.com/h2kvm/h2kvm/vfs/source/vsession"
)

// TestPlainHTTPRefused: an http:// datastore URL would carry the vSphere password (the login)
// and the session cookie (every range request) in clear, so it is refused before any request,
// with a message naming H2KVM_ALLOW_PLAINTEXT, unless AllowPlaintext is set.
func TestPlainHTTPRefused(t *testing.T) {
	var requests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		http.Error(w, "no", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	loc := "http://" + srv.Listener.Addr().String() + "/folder/vm/a.vmdk?dcPath=DC0&dsName=LocalDS_0"
	opts := Options{User: testUser, Password: testPass, HTTP: httpsrc.Options{Retry: fastRetry}}

	_, err := NewOpener(context.Background(), loc, opts)
	if !errors.Is(err, ErrPlaintext) || !strings.Contains(err.Error(), "H2KVM_ALLOW_PLAINTEXT") {
		t.Fatalf("want ErrPlaintext naming H2KVM_ALLOW_PLAINTEXT, got %v", err)
	}
	if n := requests.Load(); n != 0 {
		t.Fatalf("%d requests sent in clear before the refusal", n)
	}
	// A session given by the caller would send its cookie in clear just the same.
	opts.Session = &vsession.Session{}
	if _, err := NewOpener(context.Background(), loc, opts); !errors.Is(err, ErrPlaintext) {
		t.Fatalf("with a session: want ErrPlaintext, got %v", err)
	}
	opts.Session = nil

	opts.AllowPlaintext = true
	if o, err := NewOpener(context.Background(), loc, opts); err == nil {
		o.Close()
		t.Fatal("login to a server that answers 503 succeeded")
	} else if errors.Is(err, ErrPlaintext) {
		t.Fatalf("AllowPlaintext: still refused: %v", err)
	}
	if requests.Load() == 0 {
		t.Fatal("AllowPlaintext: no login attempted")
	}
}
