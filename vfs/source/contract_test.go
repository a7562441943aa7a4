package source

import (
	"context"
	"testing"

	"github.com/h2kvm/h2kvm/vfs/source/sourcetest"
)

// The local file source, opened as a user's path is.
func TestContract(t *testing.T) {
	sourcetest.Run(t, func(t *testing.T, content []byte) sourcetest.Fixture {
		p := sourcetest.WriteFile(t, "disk.bin", content)
		o, name, err := Open(context.Background(), p, Config{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { o.Close() })
		return sourcetest.Fixture{Opener: o, Name: name, Self: "disk.bin", Missing: "missing.bin"}
	})
}
