package httpsrc

import (
	"testing"
	"time"

	"github.com/h2kvm/h2kvm/vfs/source/httpsrc/httpsrctest"
	"github.com/h2kvm/h2kvm/vfs/source/sourcetest"
)

// Files of an httptest server; faults are the server's injected 500s.
func TestContract(t *testing.T) {
	sourcetest.Run(t, func(t *testing.T, content []byte) sourcetest.Fixture {
		srv := newServer(t, content)
		first := srv.FileURL("dir/disk.bin")
		o, err := NewOpener(first, Options{Retry: fastRetry, StallTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { o.Close() })
		return sourcetest.Fixture{Opener: o, Name: first, Self: "disk.bin", Missing: "missing.bin", Attempts: fastRetry.Attempts,
			FailNext: func(n int) {
				for range n {
					srv.Inject(httpsrctest.Status500)
				}
			},
			Fail:  persistent(srv, httpsrctest.Status500),
			Stall: persistent(srv, httpsrctest.Stall)}
	})
}

// persistent returns a switch of fault f on every request.
func persistent(srv *httpsrctest.Server, f httpsrctest.Fault) func(on bool) {
	return func(on bool) {
		if on {
			srv.SetPersistent(f)
		} else {
			srv.SetPersistent(httpsrctest.None)
		}
	}
}
