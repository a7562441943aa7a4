package integration

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/h2kvm/h2kvm/store"
)

// TestServeCrashRecovery kills `h2kvm serve` with SIGKILL while unflushed writes are in flight,
// then checks the state database, the flushed data and the restored export; finally SIGTERM
// must end the daemon cleanly.
func TestServeCrashRecovery(t *testing.T) {
	needTool(t, "qemu-io", "nbdcopy")
	src := t.TempDir()
	top := smallChain(t, src)
	before := sha256Dir(t, src)
	ref, err := os.ReadFile(qemuRaw(t, top))
	if err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	sd := shortDir(t)
	ctl, nbd := filepath.Join(sd, "ctl.sock"), filepath.Join(sd, "nbd.sock")
	args := []string{"serve", "--state-dir", state, "--control", ctl, "--nbd-socket", nbd, "--log-level", "debug"}
	c := controlClient(ctl)
	uri := "nbd+unix:///w?socket=" + nbd

	p := startH2KVM(t, nil, args...)
	waitReady(t, p, c)
	if st, b := api(t, c, "POST", "/v1/exports", map[string]any{"name": "w", "source": top}); st != http.StatusCreated {
		t.Fatalf("create: %d %s", st, b)
	}
	qemuIO(t, uri, "write -P 0xc1 1M 256k", "write -z 5M 128k", "flush")
	flushed := bytes.Clone(ref)
	copy(flushed[1<<20:], bytes.Repeat([]byte{0xc1}, 256<<10))
	copy(flushed[5<<20:], make([]byte, 128<<10))

	// More writes that are never flushed: qemu-io sends them (writeback: no FUA), then sleeps.
	q := exec.Command("qemu-io", "-f", "raw", "-t", "writeback", "-c", "write -P 0xd2 2M 2M", "-c", "write -P 0xd3 6M 1M",
		"-c", "sleep 60000", uri)
	if err := q.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { q.Process.Kill(); q.Wait() }()
	// Wait until the daemon has taken some of them (its overlay grows).
	overlay := filepath.Join(state, "overlays", "w.overlay")
	var grown bool
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end) && !grown; time.Sleep(10 * time.Millisecond) {
		var st syscall.Stat_t
		grown = syscall.Stat(overlay, &st) == nil && st.Blocks*512 >= 1<<20
	}
	if !grown {
		t.Fatalf("the unflushed writes did not reach the overlay")
	}
	p.signal(t, syscall.SIGKILL)
	q.Process.Kill()
	q.Wait()

	// The database is consistent after the crash.
	s, err := store.Open(filepath.Join(state, "h2kvm.db"), store.Options{})
	if err != nil {
		t.Fatalf("open the state database after kill -9: %v", err)
	}
	if err := s.Check(context.Background()); err != nil {
		t.Fatalf("state database after kill -9: %v", err)
	}
	recs, err := s.Exports(context.Background())
	if err != nil || len(recs) != 1 || recs[0].Name != "w" {
		t.Fatalf("export records after kill -9: %+v %v", recs, err)
	}
	s.Close()

	// Restart: the export is back, flushed writes are there, unflushed ones are all or nothing
	// per overlay block (64 KiB): each block holds the old bytes or the written ones.
	p = startH2KVM(t, nil, args...)
	waitReady(t, p, c)
	st, b := api(t, c, "GET", "/v1/exports/w", nil)
	if st != http.StatusOK {
		t.Fatalf("export not restored: %d %s", st, b)
	}
	qemuIO(t, uri, "read -P 0xc1 1M 256k", "read -P 0 5M 128k")
	got := filepath.Join(t.TempDir(), "after.raw")
	runCmd(t, "", "nbdcopy", uri, got)
	after, err := os.ReadFile(got)
	if err != nil {
		t.Fatal(err)
	}
	const bs = 64 << 10
	kept := 0
	for off := 0; off < len(after); off += bs {
		blk := after[off : off+bs]
		if bytes.Equal(blk, flushed[off:off+bs]) {
			continue
		}
		inUnflushed := off >= 2<<20 && off < 4<<20 || off >= 6<<20 && off < 7<<20
		pat := byte(0xd2)
		if off >= 6<<20 {
			pat = 0xd3
		}
		if !inUnflushed || !bytes.Equal(blk, bytes.Repeat([]byte{pat}, bs)) {
			t.Fatalf("block at %d after the crash is neither the flushed data nor a later write", off)
		}
		kept++
	}
	t.Logf("%d of 48 unflushed 64 KiB blocks survived the crash", kept)

	// SIGTERM: exit 0, sockets removed, database closed cleanly.
	if code := p.signal(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code %d after SIGTERM\n%s", code, p.stderr.String())
	}
	for _, sock := range []string{ctl, nbd} {
		if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("socket %s left after SIGTERM: %v", sock, err)
		}
	}
	s, err = store.Open(filepath.Join(state, "h2kvm.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if sha256Dir(t, src) != before {
		t.Fatal("source files changed")
	}
}

// TestServeMount serves --export flags on a FUSE mount: the files equal qemu-img's output, the
// read-only one refuses writes, SIGINT unmounts.
func TestServeMount(t *testing.T) {
	needTool(t, "fusermount3", "cmp")
	src := t.TempDir()
	top := smallChain(t, src)
	before := sha256Dir(t, src)
	ref := qemuRaw(t, top)
	mnt := t.TempDir()
	state := t.TempDir()
	p := startH2KVM(t, nil, "serve", "--state-dir", state, "--mount", mnt,
		"--export", "x="+top+",ro", "--export", "y="+top)
	xf, yf := filepath.Join(mnt, "x", "disk.raw"), filepath.Join(mnt, "y", "disk.raw")
	waitFile(t, p, yf)
	runCmd(t, "", "cmp", xf, ref)
	runCmd(t, "", "cmp", yf, ref)
	if f, err := os.OpenFile(xf, os.O_WRONLY, 0); !errors.Is(err, syscall.EROFS) {
		if f != nil {
			f.Close()
		}
		t.Fatalf("opening the read-only export for writing: %v, want EROFS", err)
	}
	// The writable one takes writes (into its overlay, not the source).
	f, err := os.OpenFile(yf, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("h2kvm was here"), 4096); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 14)
	if _, err := f.ReadAt(buf, 4096); err != nil || string(buf) != "h2kvm was here" {
		t.Fatalf("read back %q, %v", buf, err)
	}
	f.Close()
	if code := p.signal(t, syscall.SIGINT); code != 0 {
		t.Fatalf("exit code %d after SIGINT\n%s", code, p.stderr.String())
	}
	if mounted(t, mnt) {
		t.Fatalf("%s still mounted after SIGINT", mnt)
	}
	// --export exports are transient: nothing of them is left in the state directory.
	if ents, _ := os.ReadDir(filepath.Join(state, "overlays")); len(ents) != 0 {
		t.Fatalf("overlays left: %v", ents)
	}
	if sha256Dir(t, src) != before {
		t.Fatal("source files changed")
	}
}

// TestMountCommand runs `h2kvm mount SOURCE MNT`: a read-only file equal to qemu-img's output,
// EROFS on writes, unmounted by SIGINT, the source untouched.
func TestMountCommand(t *testing.T) {
	needTool(t, "fusermount3", "cmp")
	src := t.TempDir()
	top := smallChain(t, src)
	before := sha256Dir(t, src)
	ref := qemuRaw(t, top)
	mnt := t.TempDir()
	var stdout syncBuffer
	p := startH2KVM(t, &stdout, "mount", top, mnt)
	file := filepath.Join(mnt, "top", "disk.raw")
	waitFile(t, p, file)
	if err := waitOutput(&stdout, file); err != nil {
		t.Fatalf("stdout %q does not name %s", stdout.String(), file)
	}
	if !mounted(t, mnt) {
		t.Fatalf("%s not in /proc/mounts", mnt)
	}
	runCmd(t, "", "cmp", file, ref)
	if f, err := os.OpenFile(file, os.O_RDWR, 0); !errors.Is(err, syscall.EROFS) {
		if f != nil {
			f.Close()
		}
		t.Fatalf("opening for writing: %v, want EROFS", err)
	}
	if err := os.Truncate(file, 0); !errors.Is(err, syscall.EROFS) {
		t.Fatalf("truncate: %v, want EROFS", err)
	}
	// A file still open (another tool) does not hold the unmount: it is detached.
	held, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	start := time.Now()
	if code := p.signal(t, syscall.SIGINT); code != 0 {
		t.Fatalf("exit code %d after SIGINT\n%s", code, p.stderr.String())
	}
	if took := time.Since(start); took > 15*time.Second {
		t.Errorf("unmount with an open file took %v", took)
	}
	if mounted(t, mnt) {
		t.Fatalf("%s still mounted after SIGINT", mnt)
	}
	if sha256Dir(t, src) != before {
		t.Fatal("source files changed")
	}
}

func waitOutput(b *syncBuffer, want string) error {
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if strings.Contains(b.String(), want) {
			return nil
		}
	}
	return errors.New("not printed")
}

// TestGuestfishOnMount lets libguestfs find the file system of an ext4 image exported as a
// FUSE file by `h2kvm mount` (one appliance launch under TCG).
func TestGuestfishOnMount(t *testing.T) {
	if testing.Short() {
		t.Skip("launches the libguestfs appliance")
	}
	needTool(t, "guestfish", "mkfs.ext4", "fusermount3")
	src := t.TempDir()
	raw := filepath.Join(src, "fs.raw")
	runCmd(t, "", "truncate", "-s", "32M", raw)
	runCmd(t, "", "mkfs.ext4", "-q", "-F", "-L", "h2kvmtest", raw)
	disk := filepath.Join(src, "fs.vmdk")
	runCmd(t, "", "qemu-img", "convert", "-O", "vmdk", raw, disk)
	os.Remove(raw)
	mnt := t.TempDir()
	p := startH2KVM(t, nil, "mount", disk, mnt)
	file := filepath.Join(mnt, "fs", "disk.raw")
	waitFile(t, p, file)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "guestfish", "--ro", "--format=raw", "-a", file, "run", ":", "list-filesystems", ":", "vfs-label", "/dev/sda")
	cmd.Env = append(os.Environ(), "LIBGUESTFS_BACKEND=direct", "LIBGUESTFS_BACKEND_SETTINGS=force_tcg")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("guestfish: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "/dev/sda: ext4") || !strings.Contains(string(out), "h2kvmtest") {
		t.Fatalf("guestfish found no ext4 labelled h2kvmtest:\n%s", out)
	}
	if code := p.signal(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
}
