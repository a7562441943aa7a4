package nbdsrc

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/h2kvm/h2kvm/internal/libnbd/nbdkittest"
	"github.com/h2kvm/h2kvm/vfs/source/sourcetest"
)

// Exports of a real nbdkit serving a folder (file plugin, dir=); its error filter fails every
// read with EIO while a trigger file exists.
func TestContract(t *testing.T) {
	sourcetest.Run(t, func(t *testing.T, content []byte) sourcetest.Fixture {
		dir := filepath.Dir(sourcetest.WriteFile(t, "disk.bin", content))
		trigger := filepath.Join(t.TempDir(), "fail")
		sock := nbdkittest.Start(t, "--filter=error", "file", "dir="+dir,
			"error-pread=EIO", "error-pread-rate=100%", "error-pread-file="+trigger)
		first := "nbd+unix:///disk.bin?socket=" + sock
		o, err := NewOpener(first, Options{Retry: fastRetry})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { o.Close() })
		return sourcetest.Fixture{Opener: o, Name: first, Self: "disk.bin", Missing: "missing.bin", Attempts: fastRetry.Attempts,
			// Export names are the server's whole namespace: only climbing above it escapes.
			Escapes: []string{"../../etc/passwd", "../disk.bin"},
			Fail: func(on bool) {
				if on {
					os.WriteFile(trigger, nil, 0o600)
				} else {
					os.Remove(trigger)
				}
			}}
	})
}
