package daemon

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmware/govmomi/simulator"

	"github.com/h2kvm/h2kvm/internal/libnbd/nbdkittest"
	"github.com/h2kvm/h2kvm/vfs/source"
	"github.com/h2kvm/h2kvm/vfs/source/httpsrc"
)

const (
	vcUser = "migrator@vsphere.local"
	vcPass = "s3cret-Pass"
)

// TestVCSimDatastore serves a real qemu-img chain from the vCenter simulator's datastore
// (/folder over HTTPS, login with user and password) through the daemon.
func TestVCSimDatastore(t *testing.T) {
	needTool(t, "nbdcopy", "qemu-img", "qemu-io")
	t.Setenv("TMPDIR", t.TempDir()) // vcsim keeps its datastores under TMPDIR
	m := simulator.VPX()
	if err := m.Create(); err != nil {
		t.Fatal(err)
	}
	m.Service.Listen = &url.URL{Host: "127.0.0.1:0", User: url.UserPassword(vcUser, vcPass)}
	m.Service.TLS = new(tls.Config)
	srv := m.Service.NewServer()
	t.Cleanup(func() { srv.Close(); m.Remove() })
	ds := m.Service.Context.Map.Any("Datastore").(*simulator.Datastore)
	dir := filepath.Join(ds.Summary.Url, "vm1")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	top := smallChain(t, dir)
	want := qemuRaw(t, top)
	before := sha256Files(t, dir)
	thumb := httpsrc.ThumbprintSHA256(srv.Certificate().Raw)
	loc := fmt.Sprintf("https://%s/folder/vm1/top.vmdk?dcPath=DC0&dsName=%s", srv.URL.Host, url.QueryEscape(ds.Name))

	td := startDaemon(t, Config{Source: source.Config{
		VSphereUser: vcUser, VSpherePassword: vcPass, Retry: fastRetry,
		TLS: httpsrc.TLSOptions{Thumbprints: []string{thumb}},
	}})
	info := td.create(t, ExportSpec{Name: "vc", Source: loc, ReadOnly: true})
	if info.VirtualSize != 8<<20 {
		t.Fatalf("virtual size %d", info.VirtualSize)
	}
	if got := nbdRead(t, td.uri("vc")); !bytes.Equal(got, want) {
		t.Fatalf("datastore export differs from qemu-img convert of the local files: %s", firstDiff(got, want))
	}
	ei := td.export(t, "vc")
	if ei.Chain == nil || len(ei.Chain.Links) != 3 || ei.Stats.FetchedBytes == 0 {
		t.Fatalf("export: chain %+v stats %+v", ei.Chain, ei.Stats)
	}
	st, b := td.do(t, "GET", "/v1/exports/vc", nil)
	if st != http.StatusOK || strings.Contains(string(b), vcPass) {
		t.Fatalf("export description: %d, carries the password: %v", st, strings.Contains(string(b), vcPass))
	}

	// Insecure TLS also works; a wrong thumbprint or password is refused with a clear error.
	insecure := startDaemon(t, Config{Source: source.Config{VSphereUser: vcUser, VSpherePassword: vcPass,
		Retry: fastRetry, TLS: httpsrc.TLSOptions{Insecure: true}}})
	insecure.create(t, ExportSpec{Name: "vc", Source: loc, ReadOnly: true})
	if got := nbdRead(t, insecure.uri("vc")); !bytes.Equal(got, want) {
		t.Fatalf("insecure: %s", firstDiff(got, want))
	}
	for name, cfg := range map[string]source.Config{
		"wrong thumbprint": {VSphereUser: vcUser, VSpherePassword: vcPass, Retry: fastRetry,
			TLS: httpsrc.TLSOptions{Thumbprints: []string{strings.Repeat("ab", 32)}}},
		"wrong password": {VSphereUser: vcUser, VSpherePassword: "nope", Retry: fastRetry,
			TLS: httpsrc.TLSOptions{Thumbprints: []string{thumb}}},
	} {
		bad := startDaemon(t, Config{Source: cfg})
		st, b := bad.do(t, "POST", "/v1/exports", ExportSpec{Name: "vc", Source: loc, ReadOnly: true})
		msg := apiErr(t, b)
		if st != http.StatusUnprocessableEntity || strings.Contains(msg, vcPass) {
			t.Fatalf("%s: %d %s", name, st, msg)
		}
		t.Logf("%s: %s", name, msg)
	}
	if after := sha256Files(t, dir); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("datastore files changed")
	}
}

// TestNBDKitSource reads a chain served by nbdkit's file plugin (one export per file) through
// the daemon, read-only and through an overlay.
func TestNBDKitSource(t *testing.T) {
	needTool(t, "nbdcopy", "nbdkit")
	dir := t.TempDir()
	top := smallChain(t, dir)
	want := qemuRaw(t, top)
	before := sha256Files(t, dir)
	sock := nbdkittest.Start(t, "file", "dir="+dir)

	td := startDaemon(t, Config{})
	loc := "nbd+unix:///top.vmdk?socket=" + sock
	info := td.create(t, ExportSpec{Name: "k", Source: loc, ReadOnly: true})
	if info.VirtualSize != 8<<20 {
		t.Fatalf("virtual size %d", info.VirtualSize)
	}
	if got := nbdRead(t, td.uri("k")); !bytes.Equal(got, want) {
		t.Fatalf("nbdkit-served chain differs from qemu-img convert: %s", firstDiff(got, want))
	}
	ei := td.export(t, "k")
	if ei.Chain == nil || len(ei.Chain.Links) != 3 {
		t.Fatalf("chain: %+v", ei.Chain)
	}
	// Cached: files are fetched once at most (they are smaller than the reads made).
	var sizes int64
	for _, n := range []string{"base.vmdk", "mid.vmdk", "top.vmdk"} {
		sizes += fileSize(t, filepath.Join(dir, n))
	}
	if ei.Stats.FetchedBytes == 0 || ei.Stats.FetchedBytes > sizes {
		t.Fatalf("fetched %d bytes of %d bytes of files", ei.Stats.FetchedBytes, sizes)
	}

	td.create(t, ExportSpec{Name: "kw", Source: loc})
	qemuIO(t, td.uri("kw"), "write -P 0x77 3M 1M", "flush")
	copy(want[3<<20:4<<20], bytes.Repeat([]byte{0x77}, 1<<20))
	if got := nbdRead(t, td.uri("kw")); !bytes.Equal(got, want) {
		t.Fatalf("writable nbdkit export: %s", firstDiff(got, want))
	}
	if after := sha256Files(t, dir); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("source files changed")
	}
}
