// Package testenv holds what the project's tests share about their environment: the rule for
// external tools (skip when absent, fail when H2KVM_REQUIRE_TOOLS is set, as in CI), running a
// command, and govmomi's vCenter simulator with a datastore folder of real files. Only tests
// import it.
package testenv

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmware/govmomi/simulator"

	"github.com/h2kvm/h2kvm/vfs/source/httpsrc"
)

// EnvRequireTools names the variable that turns a missing tool from a skip into a failure.
const EnvRequireTools = "H2KVM_REQUIRE_TOOLS"

// NeedTool skips the test when one of the tools is not on PATH, or fails it when
// H2KVM_REQUIRE_TOOLS is set.
func NeedTool(t testing.TB, names ...string) {
	t.Helper()
	for _, name := range names {
		if _, err := exec.LookPath(name); err != nil {
			if os.Getenv(EnvRequireTools) != "" {
				t.Fatalf("%s is required (%s is set): %v", name, EnvRequireTools, err)
			}
			t.Skipf("%s not installed", name)
		}
	}
}

// Run runs a command in dir (the current folder when empty) and returns its standard output;
// it fails the test with the command's output on error.
func Run(t testing.TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// VCSim is govmomi's vCenter simulator (model VPX: datacenter DC0, VMs DC0_H0_VM0…, datastore
// LocalDS_0) served over TLS, accepting only one user and password.
type VCSim struct {
	Model  *simulator.Model
	Server *simulator.Server
	// DSName is the datastore's name and DSDir the local folder behind it.
	DSName, DSDir string
	// Thumbprint is the SHA-256 thumbprint of the server's certificate.
	Thumbprint string
	User, Pass string
}

// StartVCSim starts the simulator; it is stopped when the test ends. The simulator keeps its
// datastore folders under TMPDIR, which StartVCSim points at a folder of the test's own.
func StartVCSim(t testing.TB, user, pass string) *VCSim {
	t.Helper()
	t.Setenv("TMPDIR", t.TempDir())
	m := simulator.VPX()
	if err := m.Create(); err != nil {
		t.Fatal(err)
	}
	m.Service.Listen = &url.URL{Host: "127.0.0.1:0", User: url.UserPassword(user, pass)}
	m.Service.TLS = new(tls.Config)
	srv := m.Service.NewServer()
	t.Cleanup(func() { srv.Close(); m.Remove() })
	ds := m.Service.Context.Map.Any("Datastore").(*simulator.Datastore)
	return &VCSim{
		Model: m, Server: srv, DSName: ds.Name, DSDir: ds.Summary.Url,
		Thumbprint: httpsrc.ThumbprintSHA256(srv.Certificate().Raw), User: user, Pass: pass,
	}
}

// Host is the simulator's host:port.
func (v *VCSim) Host() string { return v.Server.URL.Host }

// Folder creates the datastore folder sub and returns its local path.
func (v *VCSim) Folder(t testing.TB, sub string) string {
	t.Helper()
	dir := filepath.Join(v.DSDir, sub)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Link symlinks files into the datastore folder sub and returns their /folder URLs in order.
func (v *VCSim) Link(t testing.TB, sub string, files ...string) []string {
	t.Helper()
	dir := v.Folder(t, sub)
	var urls []string
	for _, f := range files {
		if err := os.Symlink(f, filepath.Join(dir, filepath.Base(f))); err != nil {
			t.Fatal(err)
		}
		urls = append(urls, v.FolderURL(sub, filepath.Base(f)))
	}
	return urls
}

// FolderURL is the datastore /folder URL of file in folder sub of datacenter DC0.
func (v *VCSim) FolderURL(sub, file string) string {
	return fmt.Sprintf("https://%s/folder/%s/%s?dcPath=DC0&dsName=%s", v.Host(), sub, file, v.DSName)
}

// DSPath is the datastore path ("[ds] sub/file") VMware uses in disk backings.
func (v *VCSim) DSPath(sub, file string) string {
	return fmt.Sprintf("[%s] %s/%s", v.DSName, sub, file)
}

// ToolPath is NeedTool for one tool, returning its path.
func ToolPath(t testing.TB, name string) string {
	t.Helper()
	NeedTool(t, name)
	p, _ := exec.LookPath(name)
	return p
}
