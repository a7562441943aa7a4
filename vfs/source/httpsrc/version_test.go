package httpsrc

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestVersion: a source names the version of its file by the ETag the server sends, else by
// Last-Modified, else not at all.
func TestVersion(t *testing.T) {
	data := testData(4096)
	mod := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		etag string
		mod  time.Time
		want string
	}{
		{`"abc-1"`, mod, `etag="abc-1"`},
		{`W/"weak"`, time.Time{}, `etag=W/"weak"`},
		{"", mod, "last-modified=Fri, 02 Jan 2026 03:04:05 GMT"},
		{"", time.Time{}, ""},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if tc.etag != "" {
				w.Header().Set("ETag", tc.etag)
			}
			http.ServeContent(w, r, "disk", tc.mod, bytes.NewReader(data))
		}))
		s, err := Open(context.Background(), srv.URL+"/disk", Options{Retry: fastRetry})
		if err != nil {
			t.Fatal(err)
		}
		if got := s.Version(); got != tc.want {
			t.Errorf("ETag %q, Last-Modified %v: version %q, want %q", tc.etag, tc.mod, got, tc.want)
		}
		srv.Close()
	}
}
