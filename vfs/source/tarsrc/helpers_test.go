package tarsrc

import (
	"os"
	"os/exec"
	"testing"
)

// requireTool returns the path of an external tool, skipping the test when it is absent unless
// H2KVM_REQUIRE_TOOLS is set (CI), where its absence fails the test.
func requireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("H2KVM_REQUIRE_TOOLS") != "" {
			t.Fatalf("%s is required (H2KVM_REQUIRE_TOOLS is set): %v", name, err)
		}
		t.Skipf("%s not installed", name)
	}
	return p
}

func run(t testing.TB, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}
