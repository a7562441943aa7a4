package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/h2kvm/h2kvm/fixers/gfs"
	"github.com/h2kvm/h2kvm/pipeline/host"
)

// DoctorCmd is `h2kvm doctor`.
type DoctorCmd struct {
	JSON bool `help:"Print the report as JSON on stdout."`
}

// Help is the long help text of `h2kvm doctor --help`.
func (c *DoctorCmd) Help() string {
	return `Reports what h2kvm needs from this host and what it will use:

  - every external tool h2kvm and its tests run, with its path and version;
  - whether FUSE works (/dev/fuse opens, fusermount3 is installed);
  - whether KVM is usable: h2kvm boots the host's kernel under qemu -accel kvm for up to 20 s
    and watches the serial console, because /dev/kvm may exist and still hang (nested
    virtualisation). If not, guests and the libguestfs appliance run under TCG;
  - the libguestfs backend and settings h2kvm will use.

Set H2KVM_KVM=off (or on) to skip the KVM probe.

Exit status 0 when every required tool is present, even if KVM is unusable (TCG works, only
slower); 1 when a required tool is missing.`
}

// doctorReport is the JSON form of the report; the text form prints the same fields.
type doctorReport struct {
	Version string            `json:"version"`
	Tools   []host.ToolStatus `json:"tools"`
	Missing []string          `json:"missing"`
	FUSE    host.FUSEStatus   `json:"fuse"`
	KVM     struct {
		Usable bool   `json:"usable"`
		Detail string `json:"detail"`
	} `json:"kvm"`
	Accel   string `json:"accel"` // "kvm" or "tcg": what boot tests and the appliance use
	Guestfs struct {
		Backend  string   `json:"backend"`
		Settings []string `json:"settings"`
	} `json:"libguestfs"`
}

// Run checks the host and prints the report.
func (c *DoctorCmd) Run(ctx context.Context, g *Globals) error {
	var r doctorReport
	r.Version = version
	start := time.Now()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.KVM.Usable, r.KVM.Detail = host.CheckKVM(ctx)
	}()
	r.Tools = host.Tools(ctx)
	r.FUSE = host.FUSE()
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	g.Log.Debug("doctor: checks done", "elapsed", time.Since(start).Round(time.Millisecond))

	r.Missing = host.Missing(r.Tools)
	if r.Missing == nil {
		r.Missing = []string{}
	}
	r.Accel = "tcg"
	if r.KVM.Usable {
		r.Accel = "kvm"
	}
	opts := gfs.Options{ForceTCG: !r.KVM.Usable}
	r.Guestfs.Backend = gfs.Backend
	r.Guestfs.Settings = opts.BackendSettings()
	if r.Guestfs.Settings == nil {
		r.Guestfs.Settings = []string{}
	}

	if c.JSON {
		enc := json.NewEncoder(g.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			return fmt.Errorf("doctor: %w", err)
		}
	} else if err := printDoctor(g, &r); err != nil {
		return fmt.Errorf("doctor: %w", err)
	}
	if len(r.Missing) > 0 {
		return fmt.Errorf("doctor: required tools missing: %s (run tools/install-deps.sh)", strings.Join(r.Missing, ", "))
	}
	return nil
}

func printDoctor(g *Globals, r *doctorReport) error {
	w := tabwriter.NewWriter(g.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "h2kvm %s\n\nTools:\n", r.Version)
	for _, t := range r.Tools {
		state, version, path := "ok", t.Version, t.Path
		switch {
		case !t.Found && t.Required:
			state, path = "MISSING", "-"
		case !t.Found:
			state, path = "absent", "-"
		case version == "":
			version = "?"
		}
		fmt.Fprintf(w, "  %s\t%s\t%s\t%s\t%s\n", state, t.Name, version, path, t.Purpose)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	out := g.Stdout
	fmt.Fprintln(out)
	fmt.Fprintf(out, "FUSE usable: %s — %s\n", yesNo(r.FUSE.Usable), r.FUSE.Detail)
	if r.KVM.Usable {
		fmt.Fprintf(out, "KVM usable: yes — %s\n", r.KVM.Detail)
	} else {
		fmt.Fprintf(out, "KVM usable: no — using TCG (%s)\n", r.KVM.Detail)
	}
	settings := strings.Join(r.Guestfs.Settings, ",")
	if settings == "" {
		settings = "(none)"
	}
	fmt.Fprintf(out, "libguestfs: backend=%s settings=%s\n", r.Guestfs.Backend, settings)
	if r.Accel == "kvm" {
		fmt.Fprintln(out, "Boot tests: qemu -accel kvm, libvirt <domain type='kvm'>")
	} else {
		fmt.Fprintln(out, "Boot tests: qemu -accel tcg, libvirt <domain type='qemu'>")
	}
	if len(r.Missing) > 0 {
		fmt.Fprintf(out, "\nMissing required tools: %s\n", strings.Join(r.Missing, ", "))
	}
	return nil
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
