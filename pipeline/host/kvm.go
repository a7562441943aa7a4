package host

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// KVMProbeTimeout bounds the probe boot. A working KVM prints the kernel banner well within a
// second; a broken one hangs, so the timeout is what a broken host costs once per process.
const KVMProbeTimeout = 20 * time.Second

// kernelBanner is what every Linux kernel prints first on a console=ttyS0 serial console. Firmware
// (SeaBIOS, iPXE) also prints to the serial port, and on a broken nested KVM it does so before
// the kernel hangs, so only the kernel's own line counts as proof.
const kernelBanner = "Linux version "

var kvmCache struct {
	mu      sync.Mutex
	done    bool          // guarded by mu: usable and detail hold the answer
	usable  bool          // guarded by mu
	detail  string        // guarded by mu
	running chan struct{} // guarded by mu: closed when the probe in progress ends
	probes  int           // guarded by mu: number of probes run; for tests
}

// CheckKVM reports whether QEMU can run guests with KVM acceleration on this host, and a one-line
// detail saying why (or why not). It may be called concurrently: one caller runs the probe (up to
// KVMProbeTimeout), the others wait for its answer or for their own ctx; later callers get the
// cached answer. If ctx ends first, the answer is false with ctx's error in the detail, and a
// probe cut short is not cached.
func CheckKVM(ctx context.Context) (usable bool, detail string) {
	for {
		kvmCache.mu.Lock()
		if kvmCache.done {
			usable, detail = kvmCache.usable, kvmCache.detail
			kvmCache.mu.Unlock()
			return usable, detail
		}
		if wait := kvmCache.running; wait != nil {
			kvmCache.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return false, fmt.Sprintf("KVM probe interrupted: %v", ctx.Err())
			}
		}
		running := make(chan struct{})
		kvmCache.running = running
		kvmCache.mu.Unlock()

		usable, detail = checkKVM(ctx)
		interrupted := ctx.Err() != nil

		kvmCache.mu.Lock()
		kvmCache.probes++
		kvmCache.running = nil
		if !interrupted {
			kvmCache.done, kvmCache.usable, kvmCache.detail = true, usable, detail
		}
		kvmCache.mu.Unlock()
		close(running)
		if interrupted {
			return false, fmt.Sprintf("KVM probe interrupted: %v", ctx.Err())
		}
		return usable, detail
	}
}

func checkKVM(ctx context.Context) (bool, string) {
	switch v := strings.ToLower(os.Getenv("H2KVM_KVM")); v {
	case "", "auto":
	case "off", "no", "0", "false":
		return false, "H2KVM_KVM=" + v + ": KVM disabled by the environment"
	case "on", "yes", "1", "true":
		if _, err := os.Stat("/dev/kvm"); err != nil {
			return false, "H2KVM_KVM=" + v + " but /dev/kvm is absent"
		}
		return true, "H2KVM_KVM=" + v + ": KVM assumed usable without a probe"
	default:
		return false, fmt.Sprintf("H2KVM_KVM=%q not understood (want on, off or auto); not using KVM", v)
	}

	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return false, "/dev/kvm is absent"
		}
		return false, fmt.Sprintf("/dev/kvm cannot be opened: %v", err)
	}
	f.Close()

	kernel, err := hostKernel()
	if err != nil {
		return false, fmt.Sprintf("/dev/kvm present, but no kernel to probe it with: %v", err)
	}
	qemu, err := lookTool("qemu-system-x86_64")
	if err != nil {
		return false, "/dev/kvm present, but qemu-system-x86_64 is not installed"
	}
	ok, detail := probeBoot(ctx, qemu, "kvm", kernel, KVMProbeTimeout)
	if !ok {
		return false, "/dev/kvm present but unusable: " + detail
	}
	return true, detail
}

// hostKernel returns a readable /boot/vmlinuz-* (any will do; the one whose name sorts last is
// tried first). Debian makes them mode 0600, so only root can probe this way. The probe needs no initrd: the kernel
// prints its banner long before it looks for a root filesystem, and panic=-1 with -no-reboot
// makes QEMU exit when it fails to find one.
func hostKernel() (string, error) {
	matches, _ := filepath.Glob("/boot/vmlinuz-*")
	if len(matches) == 0 {
		return "", errors.New("no /boot/vmlinuz-* found")
	}
	sort.Sort(sort.Reverse(sort.StringSlice(matches)))
	var firstErr error
	for _, m := range matches {
		f, err := os.Open(m)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		f.Close()
		return m, nil
	}
	return "", firstErr
}

// probeBoot boots kernel under qemu with the given accelerator and reports whether the kernel's
// banner reached the serial console before timeout. QEMU is killed as soon as the banner is seen.
func probeBoot(ctx context.Context, qemu, accel, kernel string, timeout time.Duration) (bool, string) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu,
		"-accel", accel,
		"-nodefaults", "-display", "none", "-vga", "none", "-monitor", "none",
		"-serial", "stdio",
		"-m", "128", "-no-reboot",
		"-kernel", kernel,
		"-append", "console=ttyS0 panic=-1",
	)
	cmd.WaitDelay = 2 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &limitedWriter{w: &stderr, n: 4096}
	watch := newBannerWatcher(kernelBanner)
	cmd.Stdout = watch
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return false, fmt.Sprintf("probe: start %s: %v", qemu, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var waitErr error
	select {
	case <-watch.found:
		cancel() // stop the guest; its exit status no longer matters
		<-exited
	case waitErr = <-exited:
	}
	elapsed := time.Since(start).Round(100 * time.Millisecond)
	if watch.seen() {
		return true, fmt.Sprintf("a test kernel booted with -accel %s (banner after %v)", accel, elapsed)
	}
	msg := lastLine(stderr.String())
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		reason := fmt.Sprintf("the test guest printed nothing within %v (hangs)", timeout)
		if msg != "" {
			reason += "; qemu: " + msg
		}
		return false, reason
	case ctx.Err() != nil:
		return false, fmt.Sprintf("probe interrupted: %v", ctx.Err())
	case msg != "":
		return false, "qemu: " + msg
	case waitErr != nil:
		return false, fmt.Sprintf("qemu exited before the kernel printed: %v", waitErr)
	default:
		return false, "qemu exited before the kernel printed"
	}
}

// bannerWatcher is QEMU's stdout: it looks for needle in the serial stream and closes found when
// it appears. The stream holds escape sequences and may lack newlines, so it matches bytes across
// Write calls rather than lines. exec calls Write from one goroutine.
type bannerWatcher struct {
	needle []byte
	window []byte
	found  chan struct{}
}

func newBannerWatcher(needle string) *bannerWatcher {
	return &bannerWatcher{needle: []byte(needle), found: make(chan struct{})}
}

func (b *bannerWatcher) seen() bool {
	select {
	case <-b.found:
		return true
	default:
		return false
	}
}

func (b *bannerWatcher) Write(p []byte) (int, error) {
	if b.seen() {
		return len(p), nil
	}
	b.window = append(b.window, p...)
	if bytes.Contains(b.window, b.needle) {
		close(b.found)
		b.window = nil
		return len(p), nil
	}
	if keep := len(b.needle) - 1; len(b.window) > keep {
		b.window = append(b.window[:0], b.window[len(b.window)-keep:]...)
	}
	return len(p), nil
}

// lastLine returns the last non-empty line of s that is not a CPUID feature warning, which QEMU
// prints on many nested hosts and which says nothing about why it failed.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if l == "" || strings.Contains(l, "host doesn't support requested feature") ||
			strings.Contains(l, "terminating on signal") {
			continue
		}
		return l
	}
	return ""
}

type limitedWriter struct {
	w io.Writer
	n int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if l.n > 0 {
		k := min(len(p), l.n)
		l.w.Write(p[:k])
		l.n -= k
	}
	return len(p), nil
}
