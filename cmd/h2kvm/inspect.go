package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/h2kvm/h2kvm/fixers"
	"github.com/h2kvm/h2kvm/fixers/all"
	"github.com/h2kvm/h2kvm/pipeline/machine"
	"github.com/h2kvm/h2kvm/pipeline/migrate"
	"github.com/h2kvm/h2kvm/vfs/source"
)

// InspectCmd is `h2kvm inspect`.
type InspectCmd struct {
	Source   string `arg:"" help:"The VM or disk: .vmdk, .vmx, .ova, ova:ARCHIVE#MEMBER, vsphere://…, https://…, ssh://…, nbd://…."`
	JSON     bool   `help:"Print the facts as JSON on stdout."`
	Snapshot string `help:"For vsphere:// sources: inspect the disks as of this snapshot."`
}

func (c *InspectCmd) Help() string {
	return `Attaches the guest's disks read-only through libguestfs (over NBD exports of the flattened
chains, fetched lazily) and reports what decides whether it boots on KVM: OS, distribution,
kernels and their virtio drivers, the initramfs generator and what each initramfs holds,
firmware, bootloader and kernel command lines, fstab/crypttab entries with unstable names, the
network configuration with MAC pinning and VMware driver names, VMware tools, SELinux,
cloud-init, and the findings that follow. Nothing is written.`
}

func (c *InspectCmd) Run(ctx context.Context, g *Globals) error {
	cfg, err := source.ConfigFromEnv()
	if err != nil {
		return err
	}
	ex, err := migrate.Examine(ctx, c.Source, migrate.ExamineOptions{Snapshot: c.Snapshot, Source: cfg, Log: g.Log, Fixers: all.Fixers()})
	if ex == nil {
		return err
	}
	if c.JSON {
		enc := json.NewEncoder(g.Stdout)
		enc.SetIndent("", "  ")
		if e := enc.Encode(struct {
			VM       *machine.VM     `json:"vm"`
			Facts    json.RawMessage `json:"facts"`
			Refusal  string          `json:"refusal,omitempty"`
			Warnings []string        `json:"warnings,omitempty"`
		}{ex.VM, ex.Facts, ex.Refusal, ex.Warnings}); e != nil {
			return e
		}
		return err
	}
	printFacts(g.Stdout, ex)
	return err
}

// PlanCmd is `h2kvm plan`.
type PlanCmd struct {
	Source          string   `arg:"" help:"The VM or disk, as for inspect."`
	JSON            bool     `help:"Print the plan as JSON on stdout."`
	Snapshot        string   `help:"For vsphere:// sources: plan for the disks as of this snapshot."`
	KeepMAC         []string `name:"keep-mac" placeholder:"MAC" help:"A MAC the KVM domain keeps (default: the source VM's MACs when known)."`
	NoSerialConsole bool     `help:"Do not add console=ttyS0 to the kernel command line."`
}

func (c *PlanCmd) Help() string {
	return `Prints each fix 'h2kvm migrate' would make to the guest, why, and which files it touches,
derived from the facts 'h2kvm inspect' reports. Nothing is written. A guest that cannot be made
to boot (no OS found, no kernel with virtio drivers, an unsupported distribution) gets a refusal
and exit code 3.`
}

func (c *PlanCmd) Run(ctx context.Context, g *Globals) error {
	cfg, err := source.ConfigFromEnv()
	if err != nil {
		return err
	}
	ex, err := migrate.Examine(ctx, c.Source, migrate.ExamineOptions{
		Snapshot: c.Snapshot, Source: cfg, Log: g.Log, Fixers: all.Fixers(),
		Plan: fixers.PlanOptions{KeepMACs: c.KeepMAC, NoSerialConsole: c.NoSerialConsole},
	})
	if ex == nil {
		return err
	}
	if c.JSON {
		enc := json.NewEncoder(g.Stdout)
		enc.SetIndent("", "  ")
		if e := enc.Encode(struct {
			Plan    json.RawMessage `json:"plan"`
			Refusal string          `json:"refusal,omitempty"`
		}{ex.Plan, ex.Refusal}); e != nil {
			return e
		}
		return err
	}
	printPlan(g.Stdout, ex)
	return err
}

func printFacts(w io.Writer, ex *migrate.Examination) {
	f := ex.Facts
	if f == nil {
		fmt.Fprintf(w, "no facts: %s\n", ex.Refusal)
		return
	}
	b, _ := json.MarshalIndent(f, "", "  ")
	// The facts are nested; their indented JSON is the clearest text form too.
	fmt.Fprintf(w, "%s\n", b)
	if ex.Refusal != "" {
		fmt.Fprintf(w, "\nrefused: %s\n", ex.Refusal)
	}
	for _, x := range ex.Warnings {
		fmt.Fprintf(w, "warning: %s\n", x)
	}
}

func printPlan(w io.Writer, ex *migrate.Examination) {
	if ex.Refusal != "" {
		fmt.Fprintf(w, "refused: %s\n", ex.Refusal)
		return
	}
	if ex.PlanSummary == nil || len(ex.PlanSummary.Fixes) == 0 {
		fmt.Fprintln(w, "nothing to fix: the guest should boot on KVM as it is")
	}
	if ex.PlanSummary == nil {
		return
	}
	for i, f := range ex.PlanSummary.Fixes {
		fmt.Fprintf(w, "%2d. %s\n    why: %s\n    files: %s\n", i+1, f.ID, f.Reason, strings.Join(f.Files, ", "))
	}
	for _, x := range ex.PlanSummary.Warnings {
		fmt.Fprintf(w, "warning: %s\n", x)
	}
}
