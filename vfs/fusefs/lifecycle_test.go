package fusefs

// Export lifecycle: Add and Remove while mounted, unmounting, Run.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/h2kvm/h2kvm/vfs"
)

func TestAddRemoveWhileMounted(t *testing.T) {
	f := mountTest(t, Options{})
	if err := f.Add("a/b", vfs.NewMemDevice(4096), true); !errors.Is(err, ErrInvalidName) {
		t.Errorf("Add(a/b): %v, want ErrInvalidName", err)
	}
	if err := f.Add("a", testDevice(t), true); err != nil {
		t.Fatal(err)
	}
	if err := f.Add("a", vfs.NewMemDevice(4096), true); !errors.Is(err, ErrExists) {
		t.Errorf("duplicate Add: %v, want ErrExists", err)
	}
	if err := f.Remove(context.Background(), "nope"); !errors.Is(err, vfs.ErrNotFound) {
		t.Errorf("Remove(nope): %v, want ErrNotFound", err)
	}
	// A lookup of a name that does not exist yet must not hide it once added.
	if _, err := os.Stat(diskPath(f, "late")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stat before Add: %v", err)
	}
	if err := f.Add("late", vfs.NewMemDevice(8192), false); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(diskPath(f, "late")); err != nil || st.Size() != 8192 {
		t.Errorf("stat after Add: %v, %v", st, err)
	}

	// Remove waits for open handles; with a short context it gives up and changes nothing.
	fh, err := os.Open(diskPath(f, "a"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Remove(withTimeout(t, 50*time.Millisecond), "a"); !errors.Is(err, ErrBusy) {
		t.Errorf("Remove with an open file: %v, want ErrBusy", err)
	}
	if _, err := fh.ReadAt(make([]byte, 10), 0); err != nil {
		t.Errorf("read after a refused Remove: %v", err)
	}
	fh2, err := os.Open(diskPath(f, "a"))
	if err != nil {
		t.Fatalf("open after a refused Remove: %v", err)
	}
	fh2.Close()

	// While Remove waits, new opens fail; when the last handle closes, Remove returns.
	done := make(chan error, 1)
	go func() { done <- f.Remove(withTimeout(t, 10*time.Second), "a") }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		g, err := os.Open(diskPath(f, "a"))
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				t.Errorf("open while removing: %v, want ENOENT", err)
			}
			break
		}
		g.Close()
		if time.Now().After(deadline) {
			t.Fatal("opens still succeed while Remove waits")
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("Remove returned %v while a file was open", err)
	case <-time.After(100 * time.Millisecond):
	}
	if _, err := fh.ReadAt(make([]byte, 10), 0); err != nil {
		t.Errorf("read on a handle opened before Remove: %v", err)
	}
	fh.Close()
	if err := <-done; err != nil {
		t.Fatalf("Remove after close: %v", err)
	}
	if _, err := os.Stat(filepath.Join(f.Dir(), "a")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stat of removed export: %v, want ENOENT", err)
	}
	if names := f.Names(); !slices.Equal(names, []string{"late"}) {
		t.Errorf("Names after Remove: %q", names)
	}
	// The name can be reused at once, with another device.
	if err := f.Add("a", vfs.NewMemDevice(3*4096), true); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(diskPath(f, "a")); err != nil || st.Size() != 3*4096 {
		t.Errorf("stat of re-added export: %v, %v", st, err)
	}
}

// Add and Remove race with each other and with directory listings and opens (run with -race).
func TestConcurrentAddRemove(t *testing.T) {
	f := mountTest(t, Options{})
	stop := make(chan struct{})
	var lister sync.WaitGroup
	lister.Add(1)
	go func() {
		defer lister.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			ents, _ := os.ReadDir(f.Dir())
			for _, e := range ents {
				if fh, err := os.Open(diskPath(f, e.Name())); err == nil {
					fh.Close()
				}
			}
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				name := fmt.Sprintf("g%d-%d", g, i%3)
				if err := f.Add(name, vfs.NewMemDevice(int64(4096*(i+1))), i%2 == 0); err != nil {
					errs <- err
					return
				}
				if err := f.Remove(withTimeout(t, 10*time.Second), name); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	lister.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if names := f.Names(); len(names) != 0 {
		t.Errorf("exports left: %q", names)
	}
	if ents, err := os.ReadDir(f.Dir()); err != nil || len(ents) != 0 {
		t.Errorf("root lists %v, %v after all removals", ents, err)
	}
}

func TestUnmount(t *testing.T) {
	requireFUSE(t)
	t.Run("busy then clean", func(t *testing.T) {
		dir := t.TempDir()
		f, err := Mount(dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Add("x", testDevice(t), true); err != nil {
			t.Fatal(err)
		}
		fh, err := os.Open(diskPath(f, "x"))
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Unmount(); !errors.Is(err, ErrBusy) {
			t.Errorf("Unmount with an open file: %v, want ErrBusy", err)
		}
		fh.Close()
		if err := f.Unmount(); err != nil {
			t.Fatalf("Unmount: %v", err)
		}
		f.Wait() // returns at once after Unmount
		if mounted(t, dir) {
			t.Error("still mounted")
		}
		if err := f.Unmount(); err != nil {
			t.Errorf("second Unmount: %v", err)
		}
	})
	t.Run("run until cancel", func(t *testing.T) {
		dir := t.TempDir()
		f, err := MountReadOnly(dir, "x", testDevice(t))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- f.Run(ctx) }()
		if _, err := os.Stat(diskPath(f, "x")); err != nil {
			t.Fatal(err)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run: %v", err)
		}
		if mounted(t, dir) {
			t.Error("still mounted after Run's context ended")
		}
	})
	t.Run("run detaches a busy mount", func(t *testing.T) {
		dir := t.TempDir()
		f, err := MountReadOnly(dir, "x", testDevice(t))
		if err != nil {
			t.Fatal(err)
		}
		fh, err := os.Open(diskPath(f, "x"))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := f.Run(ctx); err != nil {
			t.Fatalf("Run: %v", err)
		}
		if mounted(t, dir) {
			t.Error("busy mount not detached")
		}
		// The open file still works until closed; then the server stops.
		if _, err := fh.ReadAt(make([]byte, 10), 0); err != nil {
			t.Errorf("read on a detached mount: %v", err)
		}
		fh.Close()
		waited := make(chan struct{})
		go func() { f.Wait(); close(waited) }()
		select {
		case <-waited:
		case <-time.After(10 * time.Second):
			t.Error("server still running 10s after the last file of a detached mount closed")
		}
	})
}
