package vmdk

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/h2kvm/h2kvm/internal/testenv"
	"github.com/h2kvm/h2kvm/vfs"
)

func run(t testing.TB, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(testenv.ToolPath(t, name), args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %q: %v\n%s", name, args, err, out)
	}
	return out
}

// qemuIO runs qemu-io commands (e.g. "write -P 0x11 0 64k") against a VMDK.
func qemuIO(t testing.TB, file string, cmds ...string) {
	t.Helper()
	args := []string{"-f", "vmdk"}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	run(t, "qemu-io", append(args, file)...)
}

// qemuRawFile converts a VMDK (chain) to a sparse raw file with qemu-img and returns its path.
func qemuRawFile(t testing.TB, file string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "ref.raw")
	run(t, "qemu-img", "convert", "-f", "vmdk", "-O", "raw", file, out)
	return out
}

func qemuRaw(t testing.TB, file string) []byte {
	t.Helper()
	b, err := os.ReadFile(qemuRawFile(t, file))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type qemuMapEntry struct {
	Start   int64 `json:"start"`
	Length  int64 `json:"length"`
	Depth   int   `json:"depth"`
	Present bool  `json:"present"`
	Zero    bool  `json:"zero"`
	Data    bool  `json:"data"`
}

func qemuMap(t testing.TB, file string) []qemuMapEntry {
	t.Helper()
	var m []qemuMapEntry
	if err := json.Unmarshal(run(t, "qemu-img", "map", "-f", "vmdk", "--output=json", file), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// checkMapAgainstQemu compares our extents with qemu-img map: Data where qemu says data, Zero
// where qemu says present but not data, Hole where qemu says not present; depth where present.
func checkMapAgainstQemu(t *testing.T, c *Chain, file string) {
	t.Helper()
	ctx := context.Background()
	var ours []vfs.Extent
	for pos := int64(0); pos < c.Size(); {
		m, err := c.Extents(ctx, pos, c.Size()-pos)
		if err != nil {
			t.Fatal(err)
		}
		ours = append(ours, m...)
		pos = m[len(m)-1].End()
	}
	i := 0
	for _, q := range qemuMap(t, file) {
		for pos := q.Start; pos < q.Start+q.Length; {
			for ours[i].End() <= pos {
				i++
			}
			e := ours[i]
			want := vfs.Hole
			switch {
			case q.Data:
				want = vfs.Data
			case q.Present:
				want = vfs.Zero
			}
			if e.Kind != want || (q.Present && e.Depth != q.Depth) {
				t.Fatalf("at %d: our extent %+v, qemu-img map says %+v", pos, e, q)
			}
			pos = min(e.End(), q.Start+q.Length)
		}
	}
}
