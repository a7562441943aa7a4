package gfs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// needTool returns the path of name; without it the test is skipped, or fails when
// H2KVM_REQUIRE_TOOLS is set (CI).
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		for _, d := range []string{"/usr/sbin", "/sbin"} {
			if _, e := os.Stat(filepath.Join(d, name)); e == nil {
				return filepath.Join(d, name)
			}
		}
		if os.Getenv("H2KVM_REQUIRE_TOOLS") != "" {
			t.Fatalf("required tool %s missing: %v", name, err)
		}
		t.Skipf("skipping: %s not installed", name)
	}
	return p
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// makeDisk writes a 16 MiB raw disk holding an MBR with one partition at 1 MiB and an ext4
// filesystem labelled label in it. It uses sfdisk and mke2fs, not libguestfs, so what the
// appliance finds was put there by independent tools.
func makeDisk(t *testing.T, path, label string) {
	t.Helper()
	run(t, needTool(t, "qemu-img"), "create", "-q", "-f", "raw", path, "16M")
	sfdisk := exec.Command(needTool(t, "sfdisk"), "--quiet", path)
	sfdisk.Stdin = strings.NewReader("label: dos\nstart=2048, type=83\n")
	if out, err := sfdisk.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk %s: %v\n%s", path, err, out)
	}
	run(t, needTool(t, "mke2fs"), "-q", "-F", "-t", "ext4", "-L", label, "-E", "offset=1048576", path, "15M")
}

// serve starts an NBD server command that listens on sock, and stops it when the test ends.
func serve(t *testing.T, sock string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not create %s within 30s: %s", name, sock, stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func fileHash(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// TestOpenNBDAndFile launches ONE appliance (15-60 s under TCG) with three drives: an export of
// qemu-nbd (read-only), an export of nbdkit's file plugin (read-write) and a local raw file
// (read-write). It checks that every filesystem is found with the right label, that writes to
// read-write drives reach the backing file after Close, and that the read-only one is untouched.
func TestOpenNBDAndFile(t *testing.T) {
	qemuNBD := needTool(t, "qemu-nbd")
	nbdkit := needTool(t, "nbdkit")
	needTool(t, "qemu-system-x86_64")

	dir := t.TempDir()
	// Unix socket paths are limited to 108 bytes; t.TempDir() can be long.
	sockDir, err := os.MkdirTemp("", "gfs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })

	alpha, beta, gamma := filepath.Join(dir, "alpha.img"), filepath.Join(dir, "beta.img"), filepath.Join(dir, "gamma.img")
	makeDisk(t, alpha, "h2kvm-alpha")
	makeDisk(t, beta, "h2kvm-beta")
	makeDisk(t, gamma, "h2kvm-gamma")
	alphaBefore := fileHash(t, alpha)

	sockA, sockB := filepath.Join(sockDir, "a.sock"), filepath.Join(sockDir, "b.sock")
	serve(t, sockA, qemuNBD, "--read-only", "--persistent", "-f", "raw", "-k", sockA, "-x", "alpha", alpha)
	serve(t, sockB, nbdkit, "--foreground", "--exit-with-parent", "-U", sockB, "-e", "beta", "file", "file="+beta)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// TCG works on every host; whether KVM does is pipeline/host's business, not this test's.
	opts := Options{ForceTCG: true, Identifier: "gfs-test"}
	start := time.Now()
	s, err := Open(ctx, opts,
		NBD(sockA, "alpha", true),
		NBD(sockB, "beta", false),
		File(gamma, "raw", false),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("appliance launched in %v", time.Since(start).Round(time.Millisecond))
	defer s.Close()
	g := s.G()

	if b, err := g.Get_backend(); err != nil || b != Backend {
		t.Errorf("backend = %q, %v; want %q", b, err, Backend)
	}
	if st, err := g.Get_backend_settings(); err != nil || !contains(st, "force_tcg") {
		t.Errorf("backend settings = %v, %v; want force_tcg", st, err)
	}

	fss, err := g.List_filesystems()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"/dev/sda1": "h2kvm-alpha", "/dev/sdb1": "h2kvm-beta", "/dev/sdc1": "h2kvm-gamma"}
	for dev, label := range want {
		if fss[dev] != "ext4" {
			t.Errorf("%s: filesystem %q, want ext4 (all: %v)", dev, fss[dev], fss)
			continue
		}
		got, err := g.Vfs_label(dev)
		if err != nil || got != label {
			t.Errorf("%s: label %q, %v; want %q", dev, got, err, label)
		}
	}

	// Write a pattern into the gap between the MBR and the partition of every disk.
	const off = 4096
	pattern := []byte(fmt.Sprintf("h2kvm gfs test %d", time.Now().UnixNano()))
	for _, dev := range []string{"/dev/sdb", "/dev/sdc"} {
		if n, err := g.Pwrite_device(dev, pattern, off); err != nil || n != len(pattern) {
			t.Fatalf("pwrite %s: %d, %v", dev, n, err)
		}
	}
	// The read-only drive has an overlay: the write may succeed inside the appliance, but must
	// not reach alpha.img.
	_, roErr := g.Pwrite_device("/dev/sda", pattern, off)
	t.Logf("write to read-only drive inside the appliance: %v", roErr)

	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}

	for _, p := range []string{beta, gamma} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b[off:off+len(pattern)], pattern) {
			t.Errorf("%s: write through the appliance did not reach the file: %q", p, b[off:off+len(pattern)])
		}
	}
	if fileHash(t, alpha) != alphaBefore {
		t.Errorf("read-only drive %s was modified", alpha)
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func TestDriveErrors(t *testing.T) {
	ctx := context.Background()
	if _, err := Open(ctx, Options{}); err == nil {
		t.Error("Open without drives succeeded")
	}
	needTool(t, "qemu-system-x86_64")
	// Configuration errors surface before any appliance is launched.
	if _, err := Open(ctx, Options{}, Drive{}); err == nil || !strings.Contains(err.Error(), "neither") {
		t.Errorf("empty drive: %v", err)
	}
	if _, err := Open(ctx, Options{}, Drive{Socket: "/x.sock", Path: "/y"}); err == nil || !strings.Contains(err.Error(), "both") {
		t.Errorf("socket and path: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := Open(cctx, Options{}, File("/nonexistent", "raw", true)); err != context.Canceled {
		t.Errorf("cancelled open: %v, want context.Canceled", err)
	}
}

func TestBackendSettings(t *testing.T) {
	if s := (Options{}).BackendSettings(); len(s) != 0 {
		t.Errorf("default settings %v", s)
	}
	if s := (Options{ForceTCG: true, ExtraSettings: []string{"x"}}).BackendSettings(); strings.Join(s, ",") != "force_tcg,x" {
		t.Errorf("settings %v", s)
	}
}
