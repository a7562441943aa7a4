package host

import (
	"os"
	"testing"
)

// needTool skips the test when name is missing, unless H2KVM_REQUIRE_TOOLS is set (CI), where a
// missing tool is a failure.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := lookTool(name)
	if err != nil {
		if os.Getenv("H2KVM_REQUIRE_TOOLS") != "" {
			t.Fatalf("required tool missing: %v", err)
		}
		t.Skipf("skipping: %v", err)
	}
	return p
}
