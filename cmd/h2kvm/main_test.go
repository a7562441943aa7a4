package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain lets a test run this test binary as the h2kvm command itself (see TestSIGINT): with
// H2KVM_TEST_AS_MAIN=1 it runs main with the arguments after "--".
func TestMain(m *testing.M) {
	if os.Getenv("H2KVM_TEST_AS_MAIN") == "1" {
		for i, a := range os.Args {
			if a == "--" {
				os.Args = append([]string{"h2kvm"}, os.Args[i+1:]...)
				break
			}
		}
		main()
		return
	}
	os.Exit(m.Run())
}

func runCLI(t *testing.T, ctx context.Context, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(ctx, args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestHelp(t *testing.T) {
	code, out, _ := runCLI(t, context.Background(), "--help")
	if code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	for _, want := range []string{"Usage: h2kvm", "doctor", "--log-level", "Exit codes", "130"} {
		if !strings.Contains(out, want) {
			t.Errorf("--help lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = runCLI(t, context.Background(), "doctor", "--help")
	if code != 0 || !strings.Contains(out, "--json") || !strings.Contains(out, "TCG") {
		t.Errorf("doctor --help: exit %d\n%s", code, out)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{"no-such-command"}, {"doctor", "--no-such-flag"}, {"--log-level=loud", "doctor"}, {}} {
		code, _, errOut := runCLI(t, context.Background(), args...)
		if code != exitBadInput {
			t.Errorf("%q: exit %d, want %d (stderr %q)", args, code, exitBadInput, errOut)
		}
		if !strings.Contains(errOut, "h2kvm:") {
			t.Errorf("%q: stderr does not explain: %q", args, errOut)
		}
	}
}

func TestDoctorJSON(t *testing.T) {
	t.Setenv("H2KVM_KVM", "off")
	code, out, errOut := runCLI(t, context.Background(), "doctor", "--json")
	var r doctorReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("doctor --json output is not JSON: %v\n%s", err, out)
	}
	wantCode := 0
	if len(r.Missing) > 0 {
		wantCode = 1
	}
	if code != wantCode {
		t.Errorf("exit %d with missing %v, want %d (stderr %q)", code, r.Missing, wantCode, errOut)
	}
	if os.Getenv("H2KVM_REQUIRE_TOOLS") != "" && len(r.Missing) > 0 {
		t.Errorf("missing tools in CI: %v", r.Missing)
	}
	if r.KVM.Usable || r.Accel != "tcg" || r.Guestfs.Backend != "direct" ||
		len(r.Guestfs.Settings) != 1 || r.Guestfs.Settings[0] != "force_tcg" {
		t.Errorf("with H2KVM_KVM=off: kvm %+v accel %q libguestfs %+v", r.KVM, r.Accel, r.Guestfs)
	}
	if len(r.Tools) == 0 {
		t.Error("no tools listed")
	}

	code, text, _ := runCLI(t, context.Background(), "doctor")
	if code != wantCode {
		t.Errorf("text doctor exit %d, want %d", code, wantCode)
	}
	for _, want := range []string{"KVM usable: no — using TCG", "libguestfs: backend=direct settings=force_tcg", "qemu-img", "FUSE usable:"} {
		if !strings.Contains(text, want) {
			t.Errorf("doctor output lacks %q:\n%s", want, text)
		}
	}
}

func TestCancelledContext(t *testing.T) {
	t.Setenv("H2KVM_KVM", "off")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	code, _, errOut := runCLI(t, ctx, "doctor")
	if code != exitInterrupted || !strings.Contains(errOut, "interrupted") {
		t.Errorf("cancelled doctor: exit %d, stderr %q", code, errOut)
	}
}

// TestSIGINT runs the real main (this test binary, see TestMain) and interrupts `h2kvm doctor` during its KVM probe: the
// process must end promptly with exit code 130. Where the probe ends before the signal (no
// /dev/kvm, or a KVM that works), there is nothing to interrupt and the test is skipped.
func TestSIGINT(t *testing.T) {
	if _, err := os.Stat("/dev/kvm"); err != nil || os.Getenv("H2KVM_KVM") != "" {
		t.Skip("no KVM probe to interrupt on this host")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$", "--", "doctor")
	cmd.Env = append(os.Environ(), "H2KVM_TEST_AS_MAIN=1")
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
		t.Skip("doctor finished before it could be interrupted")
	case <-time.After(3 * time.Second):
	}
	start := time.Now()
	cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatal("doctor did not stop within 30 s of SIGINT")
	}
	t.Logf("stopped %v after SIGINT", time.Since(start).Round(time.Millisecond))
	if code := cmd.ProcessState.ExitCode(); code != exitInterrupted {
		t.Errorf("exit code %d after SIGINT, want %d; stderr %q", code, exitInterrupted, errb.String())
	}
}
