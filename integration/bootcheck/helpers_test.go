package bootcheck_test

import (
	"os"
	"os/exec"
	"testing"
)

// needTools skips when a tool is absent, unless H2KVM_REQUIRE_TOOLS is set (CI), where a
// missing tool fails the test.
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

// needFile is needTools for a file a package installs (OVMF).
func needFile(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		if os.Getenv("H2KVM_REQUIRE_TOOLS") != "" {
			t.Fatalf("required file %s missing: %v", path, err)
		}
		t.Skipf("file %s missing: %v", path, err)
	}
}

// integration skips unless H2KVM_INTEGRATION=1: these tests build a guest (minutes, cached
// afterwards) and boot it under TCG.
func integration(t *testing.T) {
	t.Helper()
	if os.Getenv("H2KVM_INTEGRATION") != "1" {
		t.Skip("set H2KVM_INTEGRATION=1 to build and boot the test guests")
	}
	if testing.Short() {
		t.Skip("-short")
	}
}
