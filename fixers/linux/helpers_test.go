package linux_test

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// integration skips unless H2KVM_INTEGRATION=1: these tests need the built test guests
// (minutes to build on a cold cache) and launch the libguestfs appliance under TCG.
func integration(t *testing.T) {
	t.Helper()
	if os.Getenv("H2KVM_INTEGRATION") != "1" {
		t.Skip("set H2KVM_INTEGRATION=1 to fix and boot the test guests")
	}
	if testing.Short() {
		t.Skip("-short")
	}
}

// needTools skips when a tool is missing, or fails when H2KVM_REQUIRE_TOOLS is set (CI).
func needTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("H2KVM_REQUIRE_TOOLS") != "" {
				t.Fatalf("required tool %s missing: %v", tool, err)
			}
			t.Skipf("tool %s missing: %v", tool, err)
		}
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// allocated returns the bytes a file really occupies on the host.
func allocated(t *testing.T, path string) int64 {
	t.Helper()
	out := run(t, "du", "-B1", "--", path)
	var n int64
	for _, c := range strings.Fields(out)[0] {
		n = n*10 + int64(c-'0')
	}
	return n
}
