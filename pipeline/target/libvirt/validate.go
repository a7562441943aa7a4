package libvirt

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"libvirt.org/go/libvirtxml"

	"github.com/h2kvm/h2kvm/internal/secretenv"
	"github.com/h2kvm/h2kvm/pipeline"
	"github.com/h2kvm/h2kvm/pipeline/bootproof"
	"github.com/h2kvm/h2kvm/pipeline/machine"
	"github.com/h2kvm/h2kvm/pipeline/target"
)

// LibvirtURI is the libvirt connection the boot test uses.
const LibvirtURI = "qemu:///system"

// ValidateDomainXML checks a domain XML file against libvirt's schema with virt-xml-validate.
func ValidateDomainXML(ctx context.Context, path string) error {
	cmd := exec.CommandContext(ctx, "virt-xml-validate", path, "domain")
	cmd.Env = secretenv.Environ()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("validate: %s does not match libvirt's domain schema: %w: %s", path, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// BootTestOptions configure BootTest.
type BootTestOptions struct {
	VM machine.VM
	// Disks are the converted disks in VM order; Format is their format.
	Disks  []string
	Format string
	// DomainType is "kvm" when KVM is usable, else "qemu" (TCG).
	DomainType string
	// WorkDir holds the test's disk overlays, serial log and NVRAM; the caller removes it.
	WorkDir string
	// Timeout bounds the wait for a login prompt and an SSH banner (default 5 min).
	Timeout time.Duration
	// FailOn are console texts that prove the boot failed; the test stops as soon as one
	// appears instead of waiting out Timeout. Nil means BootFailures.
	FailOn []string
}

// BootFailures are the console texts of a guest that cannot boot: an initramfs that gave up on
// its root device (initramfs-tools, dracut), a kernel panic, systemd's emergency shell.
var BootFailures = []string{
	"Gave up waiting for root file system device",
	"Kernel panic - not syncing",
	"Entering emergency mode",
	"You are in emergency mode",
}

// BootTestResult is the boot test's evidence, for the report: the targets' common BootResult.
type BootTestResult = target.BootResult

// BootTest proves that the converted guest boots and reaches the network under libvirtd: it
// defines and starts a transient copy of the guest's domain whose disks are copy-on-write
// overlays of the outputs (the outputs stay untouched), with the first NIC on QEMU user
// networking and the guest's SSH port forwarded to a loopback port. It waits for a login prompt
// on the serial console and an SSH banner, then destroys and undefines the domain, also on
// failure. A guest that does not prove both fails with pipeline.ErrBootTest.
func BootTest(ctx context.Context, opt BootTestOptions) (BootTestResult, error) {
	if opt.Timeout <= 0 {
		opt.Timeout = 5 * time.Minute
	}
	var res BootTestResult
	var overlays []string
	for i, d := range opt.Disks {
		ov := filepath.Join(opt.WorkDir, fmt.Sprintf("boot-disk%d.qcow2", i))
		abs, err := filepath.Abs(d)
		if err != nil {
			return res, err
		}
		cmd := exec.CommandContext(ctx, "qemu-img", "create", "-q", "-f", "qcow2", "-b", abs, "-F", opt.Format, ov)
		cmd.Env = secretenv.Environ()
		out, err := cmd.CombinedOutput()
		if err != nil {
			return res, fmt.Errorf("validate: boot overlay of %s: %w: %s", d, err, out)
		}
		overlays = append(overlays, ov)
	}
	port, err := bootproof.FreePort()
	if err != nil {
		return res, err
	}
	suffix := make([]byte, 4)
	rand.Read(suffix)
	vm := opt.VM
	vm.Name = "h2kvm-boot-" + vm.Name + "-" + hex.EncodeToString(suffix)
	serial := filepath.Join(opt.WorkDir, "serial.log")
	dom, err := Domain(vm, DomainOptions{
		Type: opt.DomainType, DiskPaths: overlays, DiskFormat: "qcow2",
		UserNetPortForward: port, SerialLog: serial,
		NVRAMPath: filepath.Join(opt.WorkDir, "VARS.fd"),
	})
	if err != nil {
		return res, err
	}
	// Run QEMU as root for this throwaway domain: the overlays live in the caller's folders,
	// which the unprivileged QEMU user may not reach.
	dom.SecLabel = []libvirtxml.DomainSecLabel{{Type: "static", Model: "dac", Relabel: "no", Label: "+0:+0"}}
	xmlPath := filepath.Join(opt.WorkDir, "boot-domain.xml")
	if err := WriteDomainXML(dom, xmlPath); err != nil {
		return res, err
	}
	res.Domain, res.DomainType, res.Port = vm.Name, dom.Type, port

	if _, err := virsh(ctx, "define", xmlPath); err != nil {
		return res, err
	}
	defer func() {
		cctx := context.WithoutCancel(ctx)
		virsh(cctx, "destroy", vm.Name)
		virsh(cctx, "undefine", "--nvram", vm.Name)
	}()
	start := time.Now()
	if _, err := virsh(ctx, "start", vm.Name); err != nil {
		return res, err
	}
	wctx, cancel := context.WithTimeout(ctx, opt.Timeout)
	defer cancel()
	failOn := opt.FailOn
	if failOn == nil {
		failOn = BootFailures
	}
	res.Evidence = bootproof.Wait(wctx, serial, port, func() string {
		for _, s := range failOn {
			if bootproof.FileHas(serial, s) {
				return fmt.Sprintf("console shows %q", s)
			}
		}
		state, err := virsh(ctx, "domstate", vm.Name)
		if err != nil {
			return "libvirt: " + err.Error()
		}
		if s := strings.TrimSpace(state); s != "running" {
			return "guest " + s
		}
		return ""
	})
	res.Seconds = time.Since(start).Seconds()
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	if !res.Evidence.OK() {
		what := []string{}
		if !res.Evidence.LoginPrompt {
			what = append(what, "no login prompt on the serial console")
		}
		if res.Evidence.SSHBanner == "" {
			what = append(what, "no SSH banner through the forwarded port")
		}
		return res, fmt.Errorf("validate: %s after %.0fs (%s): %w", strings.Join(what, ", "), res.Seconds, res.Evidence.Stopped, pipeline.ErrBootTest)
	}
	return res, nil
}

// virsh runs a virsh command on LibvirtURI.
func virsh(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "virsh", append([]string{"-c", LibvirtURI}, args...)...)
	cmd.Env = secretenv.Environ()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("virsh %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}
