package bootcheck

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/h2kvm/h2kvm/pipeline/bootproof"
)

// Firmware selects the guest's firmware.
type Firmware string

// Firmware kinds.
const (
	BIOS Firmware = "bios" // SeaBIOS, the QEMU default
	UEFI Firmware = "uefi" // OVMF; Options.OVMFCode and OVMFVars
)

// Defaults.
const (
	DefaultTimeout = 150 * time.Second
	DefaultMemMiB  = 1024
	DefaultCPUs    = 1
	DefaultMAC     = "52:54:00:12:34:56"
	DefaultQEMU    = "qemu-system-x86_64"
	DefaultOVMF    = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	DefaultOVMFVar = "/usr/share/OVMF/OVMF_VARS_4M.fd"
	// LoginPrompt and SSHBanner are the two pieces of evidence Boot waits for.
	LoginPrompt = bootproof.LoginPrompt
	SSHBanner   = bootproof.SSHBanner
)

// Options say what to boot and how.
type Options struct {
	// Disk is a file of any format qemu reads, or an NBD URL (nbd://, nbd+unix://). It is
	// attached as virtio-blk with snapshot=on: it is never written.
	Disk string
	// Format is the disk's format; "" probes files with qemu-img info, and means raw for NBD.
	Format string
	// Firmware defaults to BIOS.
	Firmware Firmware
	// Accel is "tcg", "kvm" or "" (meaning H2KVM_ACCEL, else "tcg": KVM is not usable here).
	Accel string
	// MemMiB and CPUs default to DefaultMemMiB and DefaultCPUs.
	MemMiB, CPUs int
	// MAC of the virtio-net NIC; defaults to DefaultMAC (a KVM address, not the VMware one).
	MAC string
	// Timeout bounds the wait for both pieces of evidence; DefaultTimeout when 0.
	Timeout time.Duration
	// SerialLog, when set, keeps the whole serial console log at that path.
	SerialLog string
	// NoSSH waits for the login prompt only.
	NoSSH bool
	// FailOn lists serial console texts that prove the boot has failed for good (e.g. "Gave up
	// waiting for root"); seeing one ends the run early with Result.FailedOn set.
	FailOn []string
	// QEMU binary; DefaultQEMU when "". OVMFCode and OVMFVars default to Debian's 4M OVMF; the
	// vars file is copied to a temporary file and never written in place.
	QEMU, OVMFCode, OVMFVars string
	// Extra arguments appended to the QEMU command line.
	Extra []string
	// WhileUp, when set, runs once the evidence is complete and before QEMU is stopped, with the
	// forwarded SSH address ("127.0.0.1:PORT"), e.g. to run commands in the guest. Its error is
	// Result.WhileUpErr; Timeout does not bound it, ctx does.
	WhileUp func(ctx context.Context, sshAddr string) error
}

// Result is the evidence of one boot.
type Result struct {
	// Booted: LoginPrompt appeared on the serial console. Network: an SSH server answered with
	// SSHBanner through the forwarded port, so the guest's NIC, DHCP and sshd all work.
	Booted, Network bool
	// LoginAfter and SSHAfter are measured from QEMU's start; zero when not seen.
	LoginAfter, SSHAfter time.Duration
	// Elapsed is the whole run until QEMU was stopped.
	Elapsed time.Duration
	// Banner is the SSH identification line the guest sent.
	Banner string
	// SSHPort is the host port forwarded to the guest's port 22.
	SSHPort int
	// PID is QEMU's process id (already ended when Boot returns).
	PID int
	// Exited: QEMU ended by itself before the evidence was complete (ExitStatus says how), for
	// example on a triple fault or a bad drive.
	Exited     bool
	ExitStatus string
	// TimedOut: Timeout passed before the evidence was complete.
	TimedOut bool
	// FailedOn is the Options.FailOn text that ended the run, if any.
	FailedOn string
	// SerialTail is the end of the serial log (up to 4 KiB), QEMUStderr QEMU's own messages.
	SerialTail string
	QEMUStderr string
	// Command is the QEMU command line used.
	Command []string
	// WhileUpErr is what Options.WhileUp returned.
	WhileUpErr error
}

// OK reports whether the guest booted and, unless only the login was asked for, reached the
// network.
func (r Result) OK() bool { return r.Booted && r.Network }

// Summary is a one-line account of the result for test logs.
func (r Result) Summary() string {
	return fmt.Sprintf("booted=%v (%v) network=%v (%v) elapsed=%v exited=%v timedout=%v failedon=%q",
		r.Booted, r.LoginAfter.Round(time.Second), r.Network, r.SSHAfter.Round(time.Second),
		r.Elapsed.Round(time.Second), r.Exited, r.TimedOut, r.FailedOn)
}

func (o *Options) defaults() error {
	if o.Disk == "" {
		return fmt.Errorf("bootcheck: no disk: %w", ErrBadOptions)
	}
	if o.Firmware == "" {
		o.Firmware = BIOS
	}
	if o.Firmware != BIOS && o.Firmware != UEFI {
		return fmt.Errorf("bootcheck: firmware %q: %w", o.Firmware, ErrBadOptions)
	}
	if o.Accel == "" {
		o.Accel = os.Getenv("H2KVM_ACCEL")
	}
	if o.Accel == "" {
		o.Accel = "tcg"
	}
	if o.Accel != "tcg" && o.Accel != "kvm" {
		return fmt.Errorf("bootcheck: accel %q (want tcg or kvm): %w", o.Accel, ErrBadOptions)
	}
	if o.MemMiB == 0 {
		o.MemMiB = DefaultMemMiB
	}
	if o.CPUs == 0 {
		o.CPUs = DefaultCPUs
	}
	if o.MAC == "" {
		o.MAC = DefaultMAC
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.QEMU == "" {
		o.QEMU = DefaultQEMU
	}
	if o.OVMFCode == "" {
		o.OVMFCode = DefaultOVMF
	}
	if o.OVMFVars == "" {
		o.OVMFVars = DefaultOVMFVar
	}
	if strings.ContainsAny(o.Disk, ",") && !isNBD(o.Disk) {
		return fmt.Errorf("bootcheck: disk path %q contains a comma: %w", o.Disk, ErrBadOptions)
	}
	return nil
}

func isNBD(disk string) bool {
	return strings.HasPrefix(disk, "nbd://") || strings.HasPrefix(disk, "nbd+unix://")
}

// probeFormat asks qemu-img for a file's format.
func probeFormat(ctx context.Context, path string) (string, error) {
	out, err := exec.CommandContext(ctx, "qemu-img", "info", "--output=json", path).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("bootcheck: qemu-img info %s: %s: %w", path, strings.TrimSpace(string(ee.Stderr)), ErrBadOptions)
		}
		return "", fmt.Errorf("bootcheck: qemu-img info %s: %w", path, err)
	}
	var info struct {
		Format string `json:"format"`
	}
	if err := json.Unmarshal(out, &info); err != nil || info.Format == "" {
		return "", fmt.Errorf("bootcheck: qemu-img info %s: no format: %w", path, ErrBadOptions)
	}
	return info.Format, nil
}

// command builds the QEMU argument list.
func command(o Options, format, serial, vars string, port int) []string {
	drive := fmt.Sprintf("file=%s,format=%s,if=none,id=disk0,snapshot=on,cache=unsafe", o.Disk, format)
	args := []string{o.QEMU,
		"-name", "h2kvm-bootcheck",
		"-machine", "pc", "-accel", o.Accel,
		"-m", fmt.Sprint(o.MemMiB), "-smp", fmt.Sprint(o.CPUs),
		"-nodefaults", "-display", "none", "-vga", "none",
		"-chardev", "file,id=serial0,path=" + serial, "-serial", "chardev:serial0",
		"-drive", drive, "-device", "virtio-blk-pci,drive=disk0,bootindex=1",
		"-netdev", fmt.Sprintf("user,id=net0,hostfwd=tcp:127.0.0.1:%d-:22", port),
		"-device", "virtio-net-pci,netdev=net0,mac=" + o.MAC,
		"-no-reboot",
	}
	if o.Accel == "kvm" {
		args = append(args, "-cpu", "host")
	} else {
		args = append(args, "-cpu", "max")
	}
	if o.Firmware == UEFI {
		args = append(args,
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+o.OVMFCode,
			"-drive", "if=pflash,format=raw,unit=1,file="+vars)
	}
	return append(args, o.Extra...)
}

// copyFile copies src to dst (the OVMF variable store, a few hundred KiB).
func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o600)
}

// Boot starts QEMU on opt.Disk and waits until the serial console shows LoginPrompt and the
// forwarded SSH port answers with SSHBanner, until Timeout, until QEMU exits, or until ctx ends.
// QEMU is always killed before Boot returns. A guest that does not boot is not an error: the
// error is for a harness that could not run (bad options, no QEMU, no port). ctx ending returns
// the evidence so far together with ctx's error.
func Boot(ctx context.Context, opt Options) (Result, error) {
	var res Result
	if err := opt.defaults(); err != nil {
		return res, err
	}
	format := opt.Format
	if format == "" {
		if isNBD(opt.Disk) {
			format = "raw"
		} else {
			f, err := probeFormat(ctx, opt.Disk)
			if err != nil {
				return res, err
			}
			format = f
		}
	}
	tmp, err := os.MkdirTemp("", "h2kvm-bootcheck-")
	if err != nil {
		return res, fmt.Errorf("bootcheck: %w", err)
	}
	defer os.RemoveAll(tmp)
	serial := filepath.Join(tmp, "serial.log")
	vars := filepath.Join(tmp, "OVMF_VARS.fd")
	if opt.Firmware == UEFI {
		if _, err := os.Stat(opt.OVMFCode); err != nil {
			return res, fmt.Errorf("bootcheck: OVMF code: %w: %w", err, ErrBadOptions)
		}
		if err := copyFile(opt.OVMFVars, vars); err != nil {
			return res, fmt.Errorf("bootcheck: OVMF vars: %w: %w", err, ErrBadOptions)
		}
	}
	if opt.SerialLog != "" {
		defer func() {
			if b, err := os.ReadFile(serial); err == nil {
				os.WriteFile(opt.SerialLog, b, 0o644)
			}
		}()
	}
	// A port picked free may be taken before QEMU binds it; QEMU then exits at once with a
	// hostfwd error, and a new port is tried.
	for attempt := 0; ; attempt++ {
		port, err := bootproof.FreePort()
		if err != nil {
			return res, err
		}
		os.Remove(serial)
		res, err = run(ctx, opt, command(opt, format, serial, vars, port), serial, port)
		if err != nil || !res.Exited || attempt == 2 || !strings.Contains(res.QEMUStderr, "hostfwd") {
			return res, err
		}
	}
}

// run starts QEMU once and watches it. See Boot.
// res is a named result so that the deferred cleanup's evidence (tail, stderr, elapsed) reaches
// the caller.
func run(ctx context.Context, opt Options, args []string, serial string, port int) (res Result, err error) {
	res = Result{SSHPort: port, Command: args}
	var stderr limitedBuffer
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return res, fmt.Errorf("bootcheck: start %s: %w", args[0], err)
	}
	res.PID = cmd.Process.Pid
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if !res.Exited {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		res.Elapsed = time.Since(start)
		res.SerialTail = bootproof.Tail(serial, 4096)
		res.QEMUStderr = stderr.String()
	}()

	deadline := time.NewTimer(opt.Timeout)
	defer deadline.Stop()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	sshTry := make(chan string, 1)
	sshBusy := false
	for {
		if res.Booted && (res.Network || opt.NoSSH) {
			if opt.WhileUp != nil {
				res.WhileUpErr = opt.WhileUp(ctx, fmt.Sprintf("127.0.0.1:%d", port))
			}
			return res, nil
		}
		select {
		case <-ctx.Done():
			return res, fmt.Errorf("bootcheck: %w", ctx.Err())
		case <-deadline.C:
			res.TimedOut = true
			return res, nil
		case err := <-exited:
			res.Exited = true
			res.ExitStatus = "exit 0"
			if err != nil {
				res.ExitStatus = err.Error()
			}
			// The log may hold the prompt written just before the exit.
			if !res.Booted && bootproof.FileHas(serial, LoginPrompt) {
				res.Booted, res.LoginAfter = true, time.Since(start)
			}
			return res, nil
		case banner := <-sshTry:
			sshBusy = false
			if banner != "" {
				res.Network, res.Banner, res.SSHAfter = true, banner, time.Since(start)
			}
		case <-tick.C:
			if !res.Booted && bootproof.FileHas(serial, LoginPrompt) {
				res.Booted, res.LoginAfter = true, time.Since(start)
			}
			for _, f := range opt.FailOn {
				if !res.Booted && bootproof.FileHas(serial, f) {
					res.FailedOn = f
					return res, nil
				}
			}
			if !opt.NoSSH && !res.Network && !sshBusy {
				sshBusy = true
				go func() { sshTry <- bootproof.ReadBanner(ctx, port, 3*time.Second) }()
			}
		}
	}
}
