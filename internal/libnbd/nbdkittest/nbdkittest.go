// Package nbdkittest starts nbdkit for tests: a real NBD server on a Unix socket in a temp
// dir, killed when the test ends.
package nbdkittest

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/h2kvm/h2kvm/internal/testenv"
)

// NeedTool skips the test when name is missing, unless H2KVM_REQUIRE_TOOLS is set (then it
// fails).
func NeedTool(t testing.TB, name string) { t.Helper(); testenv.NeedTool(t, name) }

// Start runs `nbdkit -f --exit-with-parent -U SOCK ARGS...` and returns the socket path once
// nbdkit accepts connections on it (the file exists a moment before nbdkit listens).
func Start(t testing.TB, args ...string) string {
	t.Helper()
	NeedTool(t, "nbdkit")
	sock := filepath.Join(t.TempDir(), "nbd.sock")
	cmd := exec.Command("nbdkit", append([]string{"-f", "--exit-with-parent", "-U", sock}, args...)...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	for i := 0; i < 500; i++ {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return sock
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("nbdkit %v: socket %s did not appear", args, sock)
	return ""
}
