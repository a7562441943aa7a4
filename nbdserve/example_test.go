package nbdserve_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/h2kvm/h2kvm/nbdserve"
	"github.com/h2kvm/h2kvm/vfs"
)

// Serve an in-memory disk read-only on a unix socket; clients reach it as
// nbd+unix:///disk?socket=PATH (for example `nbdinfo nbd+unix:///disk?socket=PATH`).
func ExampleServer() {
	dir, _ := os.MkdirTemp("", "nbd-example")
	defer os.RemoveAll(dir)

	srv := nbdserve.New(nbdserve.Options{})
	dev := vfs.NewMemDevice(64 << 20)
	if err := srv.AddExport("disk", dev, nbdserve.ExportOptions{ReadOnly: true, Description: "example"}); err != nil {
		fmt.Println(err)
		return
	}
	l, err := nbdserve.ListenUnix(filepath.Join(dir, "nbd.sock"))
	if err != nil {
		fmt.Println(err)
		return
	}
	done := make(chan error)
	go func() { done <- srv.Serve(context.Background(), l) }()

	// ... clients connect here ...

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	fmt.Println("shutdown:", srv.Shutdown(ctx))
	fmt.Println("serve:", <-done)
	st, _ := srv.Stats("disk")
	fmt.Println("requests:", st.Requests)
	// Output:
	// shutdown: <nil>
	// serve: nbd: server closed
	// requests: 0
}
