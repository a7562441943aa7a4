package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/h2kvm/h2kvm/vfs/source"
)

// TestChildrenDoNotInheritSecrets: once a command runs, the credential variables are out of the
// process environment, so a child process (here env(1); in a migration qemu-img, virsh and
// libguestfs's qemu) does not see them, while the command still reads them.
func TestChildrenDoNotInheritSecrets(t *testing.T) {
	t.Setenv(source.EnvVSpherePassword, "vs-hunter2")
	pwFile := filepath.Join(t.TempDir(), "ssh-pw")
	if err := os.WriteFile(pwFile, []byte("ssh-hunter2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(source.EnvSSHPasswordFile, pwFile)
	t.Cleanup(source.HideSecrets)
	runCLI(t, context.Background(), "migrate", "x.vmdk", "--output", t.TempDir(), "--name", "../x")
	out, err := exec.Command("env").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"vs-hunter2", pwFile, source.EnvVSpherePassword, source.EnvSSHPasswordFile} {
		if strings.Contains(string(out), s) {
			t.Errorf("a child process sees %q", s)
		}
	}
	cfg, err := source.ConfigFromEnv()
	if err != nil || cfg.VSpherePassword != "vs-hunter2" || cfg.SSHPassword != "ssh-hunter2" {
		t.Fatalf("the password is lost for the command: %v", err)
	}
}
