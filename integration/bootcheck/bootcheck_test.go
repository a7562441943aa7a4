package bootcheck_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/h2kvm/h2kvm/integration/bootcheck"
)

func TestBadOptions(t *testing.T) {
	dir := t.TempDir()
	blank := filepath.Join(dir, "blank.raw")
	if err := os.WriteFile(blank, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := map[string]bootcheck.Options{
		"no disk":     {},
		"firmware":    {Disk: blank, Format: "raw", Firmware: "coreboot"},
		"accel":       {Disk: blank, Format: "raw", Accel: "hvf"},
		"comma":       {Disk: filepath.Join(dir, "a,b.raw"), Format: "raw"},
		"missing":     {Disk: filepath.Join(dir, "nope.qcow2")},
		"no ovmf":     {Disk: blank, Format: "raw", Firmware: bootcheck.UEFI, OVMFCode: filepath.Join(dir, "nope.fd")},
		"no ovmf var": {Disk: blank, Format: "raw", Firmware: bootcheck.UEFI, OVMFCode: blank, OVMFVars: filepath.Join(dir, "nope.fd")},
	}
	for name, opt := range cases {
		t.Run(name, func(t *testing.T) {
			if name == "missing" {
				needTools(t, "qemu-img")
			}
			_, err := bootcheck.Boot(context.Background(), opt)
			if !errors.Is(err, bootcheck.ErrBadOptions) {
				t.Fatalf("Boot(%+v) = %v, want ErrBadOptions", opt, err)
			}
		})
	}
}

// gone reports whether no process with pid exists any more.
func gone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// TestBlankDiskDoesNotBoot: firmware with nothing to boot gives no evidence, the timeout (or
// QEMU's own exit under -no-reboot) ends the run, and QEMU is gone afterwards. The disk is
// byte-identical afterwards (snapshot=on).
func TestBlankDiskDoesNotBoot(t *testing.T) {
	needTools(t, "qemu-system-x86_64", "qemu-img")
	dir := t.TempDir()
	disk := filepath.Join(dir, "blank.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", disk, "64M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v: %s", err, out)
	}
	before := fileSum(t, disk)
	serial := filepath.Join(dir, "serial.log")
	res, err := bootcheck.Boot(context.Background(), bootcheck.Options{Disk: disk, Timeout: 8 * time.Second, SerialLog: serial})
	if err != nil {
		t.Fatalf("Boot: %v", err)
	}
	t.Logf("%s; stderr %q", res.Summary(), res.QEMUStderr)
	if res.Booted || res.Network {
		t.Fatalf("blank disk booted: %+v", res)
	}
	if !res.TimedOut && !res.Exited {
		t.Fatalf("neither timed out nor exited: %+v", res)
	}
	if res.PID == 0 || !gone(res.PID) {
		t.Fatalf("QEMU pid %d still running after Boot", res.PID)
	}
	if !strings.Contains(strings.Join(res.Command, " "), "snapshot=on") {
		t.Fatalf("drive not in snapshot mode: %v", res.Command)
	}
	if _, err := os.Stat(serial); err != nil {
		t.Fatalf("serial log not kept: %v", err)
	}
	if fileSum(t, disk) != before {
		t.Fatal("disk under test was written")
	}
}

// TestUEFIFirmwareRuns: OVMF starts (its messages reach the serial log), the caller's variable
// store is not written, and nothing boots from an empty disk.
func TestUEFIFirmwareRuns(t *testing.T) {
	needTools(t, "qemu-system-x86_64", "qemu-img")
	needFile(t, bootcheck.DefaultOVMF)
	needFile(t, bootcheck.DefaultOVMFVar)
	dir := t.TempDir()
	disk := filepath.Join(dir, "blank.raw")
	if err := os.WriteFile(disk, make([]byte, 4<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	vars := filepath.Join(dir, "vars.fd")
	b, err := os.ReadFile(bootcheck.DefaultOVMFVar)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(vars, b, 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := bootcheck.Boot(context.Background(), bootcheck.Options{
		Disk: disk, Firmware: bootcheck.UEFI, OVMFVars: vars, Timeout: 60 * time.Second, NoSSH: true,
		FailOn: []string{"Shell> "},
	})
	if err != nil {
		t.Fatalf("Boot: %v", err)
	}
	t.Logf("%s\nserial tail:\n%s", res.Summary(), res.SerialTail)
	if res.Booted {
		t.Fatalf("empty disk booted: %+v", res)
	}
	if !strings.Contains(strings.Join(res.Command, " "), "if=pflash") {
		t.Fatalf("no pflash drives: %v", res.Command)
	}
	if res.SerialTail == "" {
		t.Fatal("OVMF wrote nothing to the serial console")
	}
	// OVMF falls back to its shell when nothing boots: FailOn ends the run there.
	if res.FailedOn != "Shell> " || res.TimedOut {
		t.Fatalf("FailOn did not end the run: %s", res.Summary())
	}
	after, _ := os.ReadFile(vars)
	if !bytes.Equal(after, b) {
		t.Fatal("caller's OVMF variable store was written")
	}
}

// TestContextCancel: cancelling ctx stops the boot early with ctx's error and kills QEMU.
func TestContextCancel(t *testing.T) {
	needTools(t, "qemu-system-x86_64")
	disk := filepath.Join(t.TempDir(), "blank.raw")
	if err := os.WriteFile(disk, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	start := time.Now()
	res, err := bootcheck.Boot(ctx, bootcheck.Options{Disk: disk, Format: "raw", Timeout: time.Minute})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Boot = %v, want DeadlineExceeded", err)
	}
	if time.Since(start) > 30*time.Second {
		t.Fatalf("cancel took %v", time.Since(start))
	}
	if res.PID == 0 || !gone(res.PID) {
		t.Fatalf("QEMU pid %d still running", res.PID)
	}
}

func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}
