package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/h2kvm/h2kvm/integration/bootcheck"
)

// V2VResult is the measure of one virt-v2v run.
type V2VResult struct {
	OK      bool     `json:"ok"`
	Error   string   `json:"error,omitempty"`
	Command []string `json:"command"`
	Log     string   `json:"log"`
	Output  string   `json:"output,omitempty"`
	Seconds float64  `json:"seconds"`
	Load    string   `json:"load_before"`
	// PeakOutputBytes: the -os folder, sampled (virt-v2v's own overlays live in its TMPDIR).
	PeakOutputBytes int64       `json:"peak_output_bytes"`
	Boot            *BootResult `json:"boot,omitempty"`
}

// runV2V converts the local chain top into dir with virt-v2v.
func (b *bench) runV2V(ctx context.Context, name, top, dir string) V2VResult {
	res := V2VResult{Log: dir + ".log", Load: loadAvg()}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		res.Error = err.Error()
		return res
	}
	res.Command = []string{"virt-v2v", "-i", "disk", top, "-o", "local", "-os", dir, "-of", "qcow2", "-on", name}
	smp := startSampler(b.interval, []string{dir})
	d, err := runLogged(ctx, b.v2vTimeout, res.Log, []string{"LIBGUESTFS_BACKEND=direct", "LIBGUESTFS_BACKEND_SETTINGS=force_tcg"}, res.Command[0], res.Command[1:]...)
	peaks, _ := smp.stop()
	res.Seconds, res.PeakOutputBytes = d.Seconds(), peaks[0]
	out := filepath.Join(dir, name+"-sda")
	if err != nil {
		// The reason is in virt-v2v's own words: its "error:" line, and the warnings before it.
		why := lastLines(res.Log, 3, "error", "warning")
		res.Error = err.Error()
		if len(why) > 0 {
			res.Error += ": " + strings.Join(why, " | ")
		}
		return res
	}
	if _, serr := os.Stat(out); serr != nil {
		res.Error = "virt-v2v succeeded but wrote no " + out
		return res
	}
	res.OK, res.Output = true, out
	return res
}

// BootResult is the evidence of one boot of an output under plain QEMU (TCG).
type BootResult struct {
	Booted       bool    `json:"login_prompt"`
	Network      bool    `json:"ssh_banner"`
	LoginSeconds float64 `json:"login_seconds,omitempty"`
	SSHSeconds   float64 `json:"ssh_seconds,omitempty"`
	Seconds      float64 `json:"seconds"`
	Banner       string  `json:"banner,omitempty"`
	FailedOn     string  `json:"failed_on,omitempty"`
	TimedOut     bool    `json:"timed_out,omitempty"`
	Exited       string  `json:"qemu_exited,omitempty"`
	Error        string  `json:"error,omitempty"`
	SerialLog    string  `json:"serial_log"`
	Load         string  `json:"load_before"`
}

// bootMAC is the KVM NIC's MAC in every boot, and the one the naive fix pins the NIC name to.
const bootMAC = bootcheck.DefaultMAC

// failTexts end a boot early: the guest will not come up.
var failTexts = []string{"Gave up waiting for root", "Kernel panic", "grub rescue>", "ALERT!", "You are in emergency mode"}

// boot proves disk boots (login prompt) and reaches the network (SSH banner).
func (b *bench) boot(ctx context.Context, disk string, fw bootcheck.Firmware, serialLog string) *BootResult {
	res := &BootResult{SerialLog: serialLog, Load: loadAvg()}
	r, err := bootcheck.Boot(ctx, bootcheck.Options{
		Disk: disk, Firmware: fw, Timeout: b.bootTimeout, SerialLog: serialLog, FailOn: failTexts,
		MAC: bootMAC,
	})
	res.Booted, res.Network, res.Banner = r.Booted, r.Network, r.Banner
	res.LoginSeconds, res.SSHSeconds = round1(r.LoginAfter), round1(r.SSHAfter)
	res.Seconds, res.FailedOn, res.TimedOut = round1(r.Elapsed), r.FailedOn, r.TimedOut
	if r.Exited {
		res.Exited = r.ExitStatus
	}
	if err != nil {
		res.Error = err.Error()
	}
	return res
}

func round1(d time.Duration) float64 {
	return float64(d.Round(100*time.Millisecond)) / float64(time.Second)
}
