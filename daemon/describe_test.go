package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/h2kvm/h2kvm/internal/testenv"
	"github.com/h2kvm/h2kvm/vfs/source"
	"github.com/h2kvm/h2kvm/vfs/source/httpsrc/httpsrctest"
)

// TestExportDescriptionRedacted: the NBD description of an export, which any client that may
// connect lists, is its source without query values: a presigned URL's signature stays private.
func TestExportDescriptionRedacted(t *testing.T) {
	testenv.NeedTool(t, "qemu-img", "nbdinfo")
	dir := t.TempDir()
	runCmd(t, dir, "qemu-img", "create", "-q", "-f", "vmdk", "d.vmdk", "1M")
	b, err := os.ReadFile(filepath.Join(dir, "d.vmdk"))
	if err != nil {
		t.Fatal(err)
	}
	srv := httpsrctest.New(map[string][]byte{"d.vmdk": b})
	defer srv.Close()
	td := startDaemon(t, Config{Source: source.Config{Retry: fastRetry}})
	td.create(t, ExportSpec{Name: "d", Source: srv.FileURL("d.vmdk") + "?X-Amz-Signature=s3cr3t-sig&X-Amz-Expires=60", ReadOnly: true})
	out := runCmd(t, "", "nbdinfo", "--list", "--json", "nbd+unix://?socket="+td.cfg.NBDSocket)
	if strings.Contains(out, "s3cr3t-sig") || !strings.Contains(out, "X-Amz-Signature=REDACTED") {
		t.Fatalf("export list shows the signature or no redacted source:\n%s", out)
	}
}
