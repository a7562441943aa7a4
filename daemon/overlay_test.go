package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/h2kvm/h2kvm/store"
)

func fill(b []byte, v byte) {
	for i := range b {
		b[i] = v
	}
}

// TestOverlayWrites writes, zeroes and discards through NBD with qemu-io, writes through the
// FUSE file, and reads everything back through NBD; the source files never change.
func TestOverlayWrites(t *testing.T) {
	needTool(t, "nbdcopy", "fusermount3")
	dir := t.TempDir()
	top := smallChain(t, dir)
	before := sha256Files(t, dir)
	want := qemuRaw(t, top)
	mnt := t.TempDir()
	td := startDaemon(t, Config{MountDir: mnt})
	td.create(t, ExportSpec{Name: "w", Source: top})
	uri := td.uri("w")

	qemuIO(t, uri,
		"write -P 0xa1 100k 300k", // partial blocks over base data
		"write -z 1M 512k",        // zeroes over data of three links
		"discard 5M 256k",         // trim over data
		"write -P 0xa2 6M 64k",    // into a hole of every link
		"flush")
	fill(want[100<<10:400<<10], 0xa1)
	fill(want[1<<20:1536<<10], 0)
	fill(want[5<<20:5376<<10], 0)
	fill(want[6<<20:6208<<10], 0xa2)
	qemuIO(t, uri, "read -P 0xa1 100k 300k", "read -P 0 1M 512k", "read -P 0 5M 256k", "read -P 0xa2 6M 64k",
		"read -P 0x32 7M 4k")
	if got := nbdRead(t, uri); !bytes.Equal(got, want) {
		t.Fatalf("after writes: %s", firstDiff(got, want))
	}

	// The FUSE file is the same device: write through it, read through NBD and back.
	f, err := os.OpenFile(filepath.Join(mnt, "w", "disk.raw"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	fw := bytes.Repeat([]byte{0xf5}, 70000)
	if _, err := f.WriteAt(fw, 3<<20+123); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	copy(want[3<<20+123:], fw)
	got := make([]byte, len(want))
	if _, err := f.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if !bytes.Equal(got, want) {
		t.Fatalf("FUSE file: %s", firstDiff(got, want))
	}
	if got := nbdRead(t, uri); !bytes.Equal(got, want) {
		t.Fatalf("NBD after the FUSE write: %s", firstDiff(got, want))
	}
	if st := td.export(t, "w").Stats; st.OverlayBytes == 0 || st.BytesWritten < 300<<10 {
		t.Fatalf("overlay stats: %+v", st)
	}
	// A read-only export refuses writes through both front ends.
	td.create(t, ExportSpec{Name: "ro", Source: top, ReadOnly: true})
	if _, err := os.OpenFile(filepath.Join(mnt, "ro", "disk.raw"), os.O_RDWR, 0); err == nil {
		t.Fatal("read-only FUSE file opened for writing")
	}
	if out, err := runQemuIO(td.uri("ro"), "write -P 1 0 4k"); err == nil {
		t.Fatalf("write to a read-only export succeeded: %s", out)
	}
	td.stop(t)
	if after := sha256Files(t, dir); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("source files changed:\nbefore %v\nafter  %v", before, after)
	}
}

// TestOverlayLifecycle checks what deleting an export and restarting the daemon do to overlays.
func TestOverlayLifecycle(t *testing.T) {
	needTool(t, "nbdcopy")
	dir := t.TempDir()
	top := smallChain(t, dir)
	orig := qemuRaw(t, top)
	written := bytes.Clone(orig)
	fill(written[2<<20:2<<20+64<<10], 0xee)

	td := startDaemon(t, Config{})
	cfg := td.cfg
	write := func(name string) {
		qemuIO(t, td.uri(name), "write -P 0xee 2M 64k", "flush")
	}
	expect := func(name string, want []byte, what string) {
		t.Helper()
		if got := nbdRead(t, td.uri(name)); !bytes.Equal(got, want) {
			t.Fatalf("%s: export %s: %s", what, name, firstDiff(got, want))
		}
	}
	overlayFile := func(name string) string { return filepath.Join(cfg.StateDir, "overlays", name+".overlay") }

	// Without keep_overlay, deleting discards the writes.
	td.create(t, ExportSpec{Name: "d", Source: top})
	write("d")
	if st, b := td.do(t, "DELETE", "/v1/exports/d", nil); st != http.StatusNoContent {
		t.Fatalf("delete: %d %s", st, b)
	}
	if _, err := os.Stat(overlayFile("d")); !os.IsNotExist(err) {
		t.Fatalf("overlay of a deleted export is still there: %v", err)
	}
	td.create(t, ExportSpec{Name: "d", Source: top})
	expect("d", orig, "recreated after delete")

	// With keep_overlay, it survives deletion (and ?discard=true drops it).
	td.create(t, ExportSpec{Name: "k", Source: top, KeepOverlay: true})
	write("k")
	if st, _ := td.do(t, "DELETE", "/v1/exports/k", nil); st != http.StatusNoContent {
		t.Fatalf("delete k: %d", st)
	}
	td.create(t, ExportSpec{Name: "k", Source: top, KeepOverlay: true})
	expect("k", written, "kept overlay after delete")
	if st, _ := td.do(t, "DELETE", "/v1/exports/k?discard=true", nil); st != http.StatusNoContent {
		t.Fatalf("delete k with discard: %d", st)
	}
	td.create(t, ExportSpec{Name: "k", Source: top, KeepOverlay: true})
	expect("k", orig, "recreated after discard")

	// Restart: API-created exports come back with their overlay data; transient ones do not.
	write("d")
	write("k")
	td.create(t, ExportSpec{Name: "ro", Source: top, ReadOnly: true})
	td.create(t, ExportSpec{Name: "tmp", Source: top, Transient: true})
	write("tmp")
	if _, err := os.Stat(overlayFile("tmp")); err != nil {
		t.Fatalf("transient export has no overlay while open: %v", err)
	}
	td.stop(t)
	if _, err := os.Stat(overlayFile("tmp")); !os.IsNotExist(err) {
		t.Fatalf("transient overlay left after shutdown: %v", err)
	}

	td = startDaemon(t, cfg)
	var names []string
	for _, e := range td.ListExports() {
		names = append(names, e.Name)
	}
	if fmt.Sprint(names) != "[d k ro]" {
		t.Fatalf("restored exports %v, want [d k ro]", names)
	}
	expect("d", written, "restored")
	expect("k", written, "restored")
	expect("ro", orig, "restored")
	if st, _ := td.do(t, "GET", "/v1/exports/tmp", nil); st != http.StatusNotFound {
		t.Fatalf("transient export restored: %d", st)
	}
	if info := td.export(t, "ro"); !info.ReadOnly {
		t.Fatalf("restored export lost its read-only flag: %+v", info)
	}
}

// TestConcurrentCreateDelete: concurrent creates of one name yield one export and conflicts;
// deleting an export whose FUSE file is open is refused and leaves it working.
func TestConcurrentCreateDelete(t *testing.T) {
	needTool(t, "fusermount3")
	dir := t.TempDir()
	top := smallChain(t, dir)
	want := qemuRaw(t, top)
	mnt := t.TempDir()
	td := startDaemon(t, Config{MountDir: mnt})

	const n = 6
	codes := make(chan int, n)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, _ := td.tryDo("POST", "/v1/exports", ExportSpec{Name: "c", Source: top})
			codes <- st
		}()
	}
	wg.Wait()
	close(codes)
	count := map[int]int{}
	for c := range codes {
		count[c]++
	}
	if count[http.StatusCreated] != 1 || count[http.StatusConflict] != n-1 {
		t.Fatalf("concurrent creates: %v, want one 201 and %d 409", count, n-1)
	}

	f, err := os.Open(filepath.Join(mnt, "c", "disk.raw"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	err = td.DeleteExport(ctx, "c", false)
	cancel()
	if !errors.Is(err, ErrBusy) {
		t.Fatalf("delete with an open FUSE file: %v, want ErrBusy", err)
	}
	// Still served by both front ends.
	got := make([]byte, len(want))
	if _, err := f.ReadAt(got, 0); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("FUSE read after a refused delete: %v %s", err, firstDiff(got, want))
	}
	f.Close()
	if got := nbdRead(t, td.uri("c")); !bytes.Equal(got, want) {
		t.Fatalf("NBD read after a refused delete: %s", firstDiff(got, want))
	}
	if st, b := td.do(t, "DELETE", "/v1/exports/c", nil); st != http.StatusNoContent {
		t.Fatalf("delete after close: %d %s", st, b)
	}
	if _, err := os.Stat(filepath.Join(mnt, "c")); !os.IsNotExist(err) {
		t.Fatalf("FUSE folder of a deleted export: %v", err)
	}
}

// TestOverlayKeptWhenRestoreFails: an export whose source is missing at a restart is not
// served, but its record and overlay are kept, so the next restart restores its writes.
func TestOverlayKeptWhenRestoreFails(t *testing.T) {
	needTool(t, "nbdcopy")
	dir := t.TempDir()
	top := smallChain(t, dir)
	want := qemuRaw(t, top)
	fill(want[2<<20:2<<20+64<<10], 0xee)
	td := startDaemon(t, Config{})
	cfg := td.cfg
	td.create(t, ExportSpec{Name: "w", Source: top})
	qemuIO(t, td.uri("w"), "write -P 0xee 2M 64k", "flush")
	td.stop(t)

	// The source is away (an unmounted datastore, an unreachable host) at this restart.
	hidden := filepath.Join(t.TempDir(), "away")
	if err := os.Rename(dir, hidden); err != nil {
		t.Fatal(err)
	}
	td = startDaemon(t, cfg)
	if n := len(td.ListExports()); n != 0 {
		t.Fatalf("%d exports served without their source", n)
	}
	// Its name is taken: another source or a transient export would use or drop its overlay.
	other := filepath.Join(hidden, "base.vmdk")
	for _, spec := range []ExportSpec{{Name: "w", Source: other}, {Name: "w", Source: filepath.Join(hidden, "top.vmdk"), Transient: true}} {
		if st, b := td.do(t, "POST", "/v1/exports", spec); st != http.StatusConflict {
			t.Fatalf("create %+v over an unrestored export: %d %s", spec, st, b)
		}
	}
	td.stop(t)

	if err := os.Rename(hidden, dir); err != nil {
		t.Fatal(err)
	}
	td = startDaemon(t, cfg)
	if got := nbdRead(t, td.uri("w")); !bytes.Equal(got, want) {
		t.Fatalf("writes lost after a restart without the source: %s", firstDiff(got, want))
	}
	td.stop(t)

	// An unrestored export can be deleted: record and overlay go.
	if err := os.Rename(dir, hidden); err != nil {
		t.Fatal(err)
	}
	td = startDaemon(t, cfg)
	if st, b := td.do(t, "DELETE", "/v1/exports/w", nil); st != http.StatusNoContent {
		t.Fatalf("delete an unrestored export: %d %s", st, b)
	}
	if st, _ := td.do(t, "DELETE", "/v1/exports/w", nil); st != http.StatusNotFound {
		t.Fatalf("second delete: %d", st)
	}
	if _, err := os.Stat(filepath.Join(cfg.StateDir, "overlays", "w.overlay")); !os.IsNotExist(err) {
		t.Fatalf("overlay of a deleted unrestored export: %v", err)
	}
	td.stop(t)
	if err := os.Rename(hidden, dir); err != nil {
		t.Fatal(err)
	}
	td = startDaemon(t, cfg)
	if n := len(td.ListExports()); n != 0 {
		t.Fatalf("deleted export came back: %+v", td.ListExports())
	}
}

// TestShutdownWithOpenFUSEFile: a file left open on the mount (a forensic tool, a shell) must
// not hold the shutdown for long nor leave a dead mount behind.
func TestShutdownWithOpenFUSEFile(t *testing.T) {
	needTool(t, "fusermount3")
	dir := t.TempDir()
	top := smallChain(t, dir)
	mnt := t.TempDir()
	td := startDaemon(t, Config{MountDir: mnt})
	td.create(t, ExportSpec{Name: "ro", Source: top, ReadOnly: true})
	td.create(t, ExportSpec{Name: "rw", Source: top})
	f, err := os.Open(filepath.Join(mnt, "rw", "disk.raw"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	start := time.Now()
	td.stop(t)
	took := time.Since(start)
	t.Logf("shutdown with an open file took %v", took)
	if took > 10*time.Second {
		t.Errorf("shutdown took %v with a file open on the mount", took)
	}
	if b, _ := os.ReadFile("/proc/mounts"); bytes.Contains(b, []byte(" "+mnt+" ")) {
		t.Errorf("%s is still mounted after shutdown", mnt)
	}
	// The store was closed all the same (its lock is free).
	st, err := store.Open(filepath.Join(td.cfg.StateDir, "h2kvm.db"), store.Options{LockTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
}
