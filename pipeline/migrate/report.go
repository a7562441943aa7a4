package migrate

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// writeReports writes report.json and report.md into the job's output folder, readable by
// their owner only (0600): they describe the guest's configuration in detail (its secrets
// are redacted where the changes are recorded, mergeFixes).
func writeReports(j *Job) error {
	b, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		return err
	}
	if err := writeAtomic(filepath.Join(j.Output, "report.json"), append(b, '\n')); err != nil {
		return err
	}
	return writeAtomic(filepath.Join(j.Output, "report.md"), []byte(markdown(j)))
}

// writeAtomic replaces path with a new file holding data, mode 0600 whatever the old file's
// mode was: the data goes to a fresh temporary file (os.CreateTemp makes it 0600) renamed over
// path.
func writeAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("report: %s: %w", path, err)
	}
	return nil
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// markdown renders the job for people.
func markdown(j *Job) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("# h2kvm migration of %s\n\n", j.Source)
	w("- job: `%s`\n- output: `%s` (%s)\n", j.ID, j.Output, j.Format)
	if j.VM != nil {
		w("- VM: %s, %s CPUs, %s MiB memory, firmware %s, %d disk(s), %d NIC(s)\n", j.VM.Name,
			orUnknown(j.VM.CPUs), orUnknown(j.VM.MemoryMiB), orUnknownS(j.VM.Firmware), len(j.VM.Disks), len(j.VM.NICs))
		for _, n := range j.VM.NICs {
			w("  - NIC %s %s (%s)\n", n.Model, n.MAC, n.Network)
		}
	}
	if len(j.Disks) > 0 {
		w("\n## Disks\n\n| # | source | export | KVM disk | virtual | allocated | fetched | overlay | output | on disk |\n|---|---|---|---|---|---|---|---|---|---|\n")
		for _, d := range j.Disks {
			src := d.Source
			if d.Controller != "" {
				src += " (" + d.Controller + " " + d.Unit + ")"
			}
			w("| %d | `%s` | %s | %s | %s | %s | %s | %s | `%s` | %s |\n", d.Index, src, d.Export, d.Target,
				mib(d.VirtualBytes), mib(d.AllocatedBytes), mib(d.FetchedBytes), mib(d.OverlayBytes), d.Output, mib(d.OutputBytes))
		}
	}
	var checks []string
	for _, d := range j.Disks {
		if c := d.Manifest; c != nil {
			state := "**does not match**, the bytes read hash to " + c.Actual
			if c.Verified {
				state = "verified"
			}
			checks = append(checks, fmt.Sprintf("- `%s`: %s %s %s (the check fetched %s more)\n", c.File, c.Alg, c.Expected, state, mib(c.ExtraFetchedBytes)))
		}
	}
	if len(checks) > 0 {
		w("\n## Manifest digests\n\n")
		for _, c := range checks {
			w("%s", c)
		}
	}
	w("\n## Stages\n\n| stage | status | seconds | error |\n|---|---|---|---|\n")
	for _, s := range Stages {
		r, ok := j.Stages[s]
		if !ok {
			w("| %s | not run | | |\n", s)
			continue
		}
		w("| %s | %s | %.1f | %s |\n", s, r.Status, r.Seconds, strings.ReplaceAll(r.Error, "|", "\\|"))
	}
	w("\n## Numbers\n\n")
	w("- virtual size: %s; allocated in the chain(s): %s\n", mib(j.VirtualBytes), mib(j.AllocatedBytes))
	w("- fetched from remote sources: %s\n", mib(j.FetchedBytes))
	w("- overlay (changes made to the guest): %s\n", mib(j.OverlayBytes))
	w("- output on disk: %s\n", mib(j.OutputBytes))
	w("- peak local staging (overlays + cache): %s\n", mib(j.PeakStagingBytes))
	if f := j.Facts; f != nil {
		w("\n## Guest\n\n```json\n")
		fb, _ := json.MarshalIndent(f, "", "  ")
		b.Write(fb)
		w("\n```\n")
	}
	if p := j.PlanSummary; p != nil {
		w("\n## Plan\n\n")
		for _, f := range p.Fixes {
			w("- **%s**: %s (%s)\n", f.ID, f.Reason, strings.Join(f.Files, ", "))
		}
		for _, x := range p.Warnings {
			w("- warning: %s\n", x)
		}
	}
	if r := j.Fixes; r != nil {
		w("\n## Changes\n\n")
		for _, c := range r.Changes {
			w("### %s\n\n", c.String())
			if c.Before != "" {
				w("Before:\n\n```\n%s\n```\n\n", strings.TrimRight(c.Before, "\n"))
			}
			if c.After != "" {
				w("After:\n\n```\n%s\n```\n\n", strings.TrimRight(c.After, "\n"))
			}
		}
		for _, x := range r.Warnings {
			w("- warning: %s\n", x)
		}
	}
	if j.Domain != "" {
		switch j.Target {
		case "", "libvirt":
			w("\n## Domain\n\n`%s` (validated with virt-xml-validate)\n", j.Domain)
		default:
			w("\n## Domain\n\n`%s` (target %s, validated)\n", j.Domain, j.Target)
		}
	}
	if bt := j.Boot; bt != nil {
		w("\n## Boot test\n\n- domain %s (type %s), %.0f s\n", bt.Domain, bt.DomainType, bt.Seconds)
		w("- login prompt on the serial console: %v (after %s)\n", bt.Evidence.LoginPrompt, bt.Evidence.LoginAfter.Round(time.Second))
		w("- SSH banner through 127.0.0.1:%d: %q (after %s)\n", bt.Port, bt.Evidence.SSHBanner, bt.Evidence.SSHAfter.Round(time.Second))
		if bt.Evidence.Stopped != "" {
			w("- stopped: %s\n", bt.Evidence.Stopped)
		}
		w("\nSerial console (tail):\n\n```\n%s\n```\n", bt.Evidence.SerialTail)
	}
	for _, x := range j.Warnings {
		w("\n- warning: %s", x)
	}
	w("\n")
	return b.String()
}

func orUnknown(n int) string {
	if n <= 0 {
		return "unknown"
	}
	return fmt.Sprint(n)
}

func orUnknownS(s string) string {
	if s == "" {
		return "unknown (from the guest)"
	}
	return s
}
