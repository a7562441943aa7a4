package daemon

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestVerify: an export that expects a digest shows it as unverified, then Verify (through the
// control API client) reads the source file through the export's cache: after a full read it
// fetches only what that read skipped, and a wrong digest is a mismatch, not an error.
func TestVerify(t *testing.T) {
	needTool(t, "nbdcopy")
	dir := t.TempDir()
	top := smallChain(t, dir)
	want := fileSHA256(t, top)
	srv := newFileServer(t, dir)
	td := startDaemon(t, Config{})
	c := NewClient(td.cfg.ControlSocket)

	td.create(t, ExportSpec{Name: "good", Source: srv.URL + "/top.vmdk", ReadOnly: true,
		Manifest: &Digest{Alg: "SHA256", Hex: strings.ToUpper(want)}})
	if v := td.export(t, "good").Verification; v == nil || v.State != VerifyPending || v.Expected != want {
		t.Fatalf("before verify: %+v", v)
	}
	runCmd(t, "", "nbdcopy", td.uri("good"), filepath.Join(t.TempDir(), "out.raw"))
	fetched := td.export(t, "good").Stats.FetchedBytes
	v, err := c.Verify(t.Context(), "good", VerifyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	size := fileSize(t, top)
	t.Logf("verify after a full read: %+v (file %d bytes, the read fetched %d)", v, size, fetched)
	if v.State != VerifyOK || v.Actual != want || v.Bytes != size {
		t.Errorf("verify: %+v, want verified %s", v, want)
	}
	var chain int64 // the export reads all three links
	for _, n := range []string{"base.vmdk", "mid.vmdk", "top.vmdk"} {
		chain += fileSize(t, filepath.Join(dir, n))
	}
	if fetched+v.FetchedBytes > chain+4096 || td.export(t, "good").Stats.FetchedBytes != fetched+v.FetchedBytes {
		t.Errorf("read + verify fetched %d + %d bytes of a %d-byte chain", fetched, v.FetchedBytes, chain)
	}
	if got := td.export(t, "good").Verification; got == nil || got.State != VerifyOK {
		t.Errorf("export info after verify: %+v", got)
	}

	bad := []byte(want)
	bad[0] ^= 1
	td.create(t, ExportSpec{Name: "bad", Source: top, ReadOnly: true, Manifest: &Digest{Alg: "SHA256", Hex: string(bad)}})
	if v, err := c.Verify(t.Context(), "bad", VerifyRequest{}); err != nil || v.State != VerifyMismatch || v.Actual != want {
		t.Errorf("mismatch: %+v %v", v, err)
	}

	// No expected digest: the digest asked for is computed.
	td.create(t, ExportSpec{Name: "plain", Source: top, ReadOnly: true})
	if td.export(t, "plain").Verification != nil {
		t.Error("an export without a manifest has a verification state")
	}
	if _, err := c.Verify(t.Context(), "plain", VerifyRequest{}); !errors.Is(err, ErrBadSpec) {
		t.Errorf("verify without an algorithm: %v, want ErrBadSpec", err)
	}
	if v, err := c.Verify(t.Context(), "plain", VerifyRequest{Alg: "sha256"}); err != nil || v.State != VerifyOK || v.Actual != want {
		t.Errorf("digest on request: %+v %v", v, err)
	}
	if _, err := c.Verify(t.Context(), "nope", VerifyRequest{}); !errors.Is(err, ErrNoExport) {
		t.Errorf("verify of a missing export: %v", err)
	}

	// A digest no file can have is refused at creation.
	for _, d := range []Digest{{Alg: "MD5", Hex: want[:32]}, {Alg: "SHA256", Hex: "xyz"}, {Alg: "SHA1", Hex: want}} {
		st, b := td.do(t, "POST", "/v1/exports", ExportSpec{Name: "x", Source: top, ReadOnly: true, Manifest: &d})
		var e apiError
		json.Unmarshal(b, &e)
		if st != http.StatusBadRequest || !strings.Contains(e.Error, "manifest digest") {
			t.Errorf("manifest %+v: status %d %s", d, st, b)
		}
	}
}
