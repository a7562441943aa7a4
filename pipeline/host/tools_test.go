package host

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/h2kvm/h2kvm/internal/testenv"
)

func TestTools(t *testing.T) {
	ts := Tools(context.Background())
	if len(ts) != len(RequiredTools) {
		t.Fatalf("got %d statuses for %d tools", len(ts), len(RequiredTools))
	}
	require := os.Getenv("H2KVM_REQUIRE_TOOLS") != ""
	for i, st := range ts {
		if st.Name != RequiredTools[i].Name {
			t.Errorf("status %d is %s, want %s (order must follow RequiredTools)", i, st.Name, RequiredTools[i].Name)
		}
		if !st.Found {
			if require && st.Required {
				t.Errorf("%s missing: %s", st.Name, st.Error)
			}
			continue
		}
		if fi, err := os.Stat(st.Path); err != nil || fi.Mode()&0o111 == 0 {
			t.Errorf("%s: path %q is not an executable: %v", st.Name, st.Path, err)
		}
		if st.Version == "" || !strings.Contains(st.Banner, st.Version) {
			t.Errorf("%s: version %q not taken from banner %q (%s)", st.Name, st.Version, st.Banner, st.Error)
		}
	}
	if m := Missing(ts); require && len(m) > 0 {
		t.Errorf("Missing = %v", m)
	}
	if _, err := json.Marshal(ts); err != nil {
		t.Fatal(err)
	}
}

// TestToolVersionMatchesQemuImg compares one version with what the tool itself prints, read
// independently of the parser.
func TestToolVersionMatchesQemuImg(t *testing.T) {
	p := testenv.ToolPath(t, "qemu-img")
	out, err := exec.Command(p, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	// "qemu-img version 7.2.22 (Debian ...)"
	fields := strings.Fields(string(out))
	if len(fields) < 3 || fields[1] != "version" {
		t.Fatalf("unexpected qemu-img --version output %q", out)
	}
	st := toolStatus(context.Background(), Tool{Name: "qemu-img"})
	if st.Version != fields[2] {
		t.Errorf("Version = %q, qemu-img says %q", st.Version, fields[2])
	}
}

func TestMissingTool(t *testing.T) {
	st := toolStatus(context.Background(), Tool{Name: "h2kvm-no-such-tool", Required: true})
	if st.Found || st.Error == "" {
		t.Fatalf("absent tool reported as %+v", st)
	}
	if m := Missing([]ToolStatus{st}); len(m) != 1 || m[0] != "h2kvm-no-such-tool" {
		t.Errorf("Missing = %v", m)
	}
}

func TestFUSE(t *testing.T) {
	st := FUSE()
	t.Logf("FUSE: %+v", st)
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err == nil {
		f.Close()
	}
	_, lookErr := lookTool("fusermount3")
	want := err == nil && lookErr == nil
	if st.Usable != want {
		t.Errorf("Usable = %v, independent check says %v (open: %v, fusermount3: %v)", st.Usable, want, err, lookErr)
	}
	if os.Getenv("H2KVM_REQUIRE_TOOLS") != "" && !st.Usable {
		t.Errorf("FUSE unusable in CI: %s", st.Detail)
	}
}
