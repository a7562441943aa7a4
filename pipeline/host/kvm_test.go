package host

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/h2kvm/h2kvm/internal/testenv"
)

// TestProbeBootTCG boots the host kernel under TCG, which works everywhere QEMU does: the probe
// must see the kernel banner. This is the positive path of CheckKVM's detection, exercised with
// the accelerator that this test can rely on.
func TestProbeBootTCG(t *testing.T) {
	qemu := testenv.ToolPath(t, "qemu-system-x86_64")
	kernel, err := hostKernel()
	if err != nil {
		if os.Getenv("H2KVM_REQUIRE_TOOLS") != "" {
			t.Fatalf("no kernel to boot: %v", err)
		}
		t.Skipf("no kernel to boot: %v", err)
	}
	// TCG on a loaded 2-core host can take several seconds to reach the banner.
	ok, detail := probeBoot(context.Background(), qemu, "tcg", kernel, 2*time.Minute)
	if !ok {
		t.Fatalf("TCG boot of %s not detected: %s", kernel, detail)
	}
	if !strings.Contains(detail, "-accel tcg") {
		t.Errorf("detail %q does not name the accelerator", detail)
	}
}

// TestProbeBootQEMUAborts: an accelerator QEMU does not know makes it exit at once; the probe must
// say no and pass on QEMU's own message.
func TestProbeBootQEMUAborts(t *testing.T) {
	qemu := testenv.ToolPath(t, "qemu-system-x86_64")
	kernel, err := hostKernel()
	if err != nil {
		t.Skipf("no kernel: %v", err)
	}
	ok, detail := probeBoot(context.Background(), qemu, "nosuchaccel", kernel, time.Minute)
	if ok {
		t.Fatalf("probe with a bogus accelerator reported success: %s", detail)
	}
	if !strings.Contains(detail, "qemu") || !strings.Contains(detail, "nosuchaccel") {
		t.Errorf("detail %q does not carry qemu's complaint", detail)
	}
}

// TestProbeBootMissingKernel: QEMU fails to load a kernel that does not exist.
func TestProbeBootMissingKernel(t *testing.T) {
	qemu := testenv.ToolPath(t, "qemu-system-x86_64")
	ok, detail := probeBoot(context.Background(), qemu, "tcg", t.TempDir()+"/vmlinuz-none", time.Minute)
	if ok || detail == "" {
		t.Fatalf("probe of a missing kernel: ok=%v detail=%q", ok, detail)
	}
}

// TestProbeBootCancelled: a cancelled context stops the probe promptly and is reported as such.
func TestProbeBootCancelled(t *testing.T) {
	qemu := testenv.ToolPath(t, "qemu-system-x86_64")
	kernel, err := hostKernel()
	if err != nil {
		t.Skipf("no kernel: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ok, detail := probeBoot(ctx, qemu, "tcg", kernel, time.Minute)
	if ok || !strings.Contains(detail, "interrupted") && !strings.Contains(detail, "canceled") {
		t.Fatalf("cancelled probe: ok=%v detail=%q", ok, detail)
	}
}

// TestCheckKVMConcurrent: callers that arrive during a probe wait for it instead of probing again.
// It runs before TestCheckKVM, so the cache is empty and the real probe runs here.
func TestCheckKVMConcurrent(t *testing.T) {
	testenv.ToolPath(t, "qemu-system-x86_64")
	type answer struct {
		usable bool
		detail string
	}
	answers := make(chan answer, 3)
	for range 3 {
		go func() {
			u, d := CheckKVM(context.Background())
			answers <- answer{u, d}
		}()
	}
	first := <-answers
	for range 2 {
		if a := <-answers; a != first {
			t.Errorf("concurrent callers disagree: %+v vs %+v", a, first)
		}
	}
	kvmCache.mu.Lock()
	defer kvmCache.mu.Unlock()
	if kvmCache.probes != 1 {
		t.Errorf("%d probes for 3 concurrent callers, want 1", kvmCache.probes)
	}
}

// TestCheckKVM runs the real check once and checks what can be known independently: without a
// /dev/kvm the answer is no; a second call is served from the cache without another probe.
func TestCheckKVM(t *testing.T) {
	testenv.ToolPath(t, "qemu-system-x86_64")
	usable, detail := CheckKVM(context.Background())
	t.Logf("KVM usable: %v (%s)", usable, detail)
	if detail == "" {
		t.Error("empty detail")
	}
	if _, err := os.Stat("/dev/kvm"); err != nil && usable {
		t.Errorf("KVM reported usable without /dev/kvm")
	}
	kvmCache.mu.Lock()
	n := kvmCache.probes
	kvmCache.mu.Unlock()
	u2, d2 := CheckKVM(context.Background())
	kvmCache.mu.Lock()
	n2 := kvmCache.probes
	kvmCache.mu.Unlock()
	if u2 != usable || d2 != detail || n2 != n {
		t.Errorf("second call not cached: (%v,%q) vs (%v,%q), probes %d -> %d", usable, detail, u2, d2, n, n2)
	}
}

func TestBannerWatcherAcrossWrites(t *testing.T) {
	w := newBannerWatcher(kernelBanner)
	for _, chunk := range []string{"\x1b[2JSeaBIOS\r\nBooting...\r\n[    0.000000] Lin", "ux vers", "ion 6.1.0"} {
		if w.seen() {
			t.Fatal("banner seen too early")
		}
		w.Write([]byte(chunk))
	}
	if !w.seen() {
		t.Fatal("banner split across writes not found")
	}
	w2 := newBannerWatcher(kernelBanner)
	w2.Write([]byte("SeaBIOS (version 1.16.2)\r\nProbing EDD (edd=off to disable)... ok\r\n"))
	if w2.seen() {
		t.Fatal("firmware output taken for the kernel banner")
	}
}
