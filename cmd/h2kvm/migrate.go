package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/h2kvm/h2kvm/fixers"
	fixerall "github.com/h2kvm/h2kvm/fixers/all"
	"github.com/h2kvm/h2kvm/pipeline/migrate"
	"github.com/h2kvm/h2kvm/pipeline/target/all"
	"github.com/h2kvm/h2kvm/vfs/source"
)

// MigrateCmd is `h2kvm migrate`.
type MigrateCmd struct {
	Source            string          `arg:"" help:"The VM or disk: .vmdk, .vmx, .ova, vsphere://…, https://…, ssh://…, nbd://…."`
	Output            string          `required:"" placeholder:"DIR" help:"Output folder: NAME.qcow2 (or raw; NAME-diskN.qcow2 for each disk of a VM with several), NAME.xml, report.json, report.md."`
	Server            string          `placeholder:"SOCK" help:"Control socket of a running 'h2kvm serve' (default: run one in this process)."`
	Format            string          `short:"O" enum:"qcow2,raw" default:"qcow2" help:"Output format: ${enum}."`
	Target            string          `short:"o" enum:"libvirt" default:"libvirt" help:"Output target, the VM definition VALIDATE writes: ${enum}."`
	Compress          bool            `help:"Compress qcow2 clusters."`
	Name              string          `help:"Name of the outputs and the libvirt domain (default: the VM's name): letters, digits, '.', '-', '_'."`
	BootTest          bool            `help:"Boot the result under libvirtd and prove a login prompt and network (SSH banner)."`
	BootTimeout       time.Duration   `default:"6m" help:"How long the boot test waits."`
	Resume            bool            `help:"Continue the job recorded in the output folder after its last completed stage."`
	DryRun            bool            `help:"Stop after PLAN: print the facts and the plan, change nothing."`
	Skip              []migrate.Stage `enum:"fix,validate" placeholder:"STAGE" help:"Skip a stage (fix or validate); stages are never reordered."`
	Snapshot          string          `help:"For vsphere:// sources: migrate the disks as of this snapshot."`
	VerifyDisks       bool            `help:"For OVA/OVF sources: read every disk once completely first and refuse the source if a digest differs from the manifest. Without it each disk is checked after conversion from the bytes read (no extra download), before its output gets its final name." xor:"verify"`
	NoVerifyDisks     bool            `help:"For OVA/OVF sources: do not check disks against the manifest (a warning says so in the report)." xor:"verify"`
	AllowOutsideDisks bool            `help:"For .vmx and .ovf sources: allow disks outside the VM's folder (absolute fileNames, symbolic links leading out; for a remote one, outside its datastore). Also H2KVM_ALLOW_OUTSIDE_DISKS=1."`
	CacheLimit        Size            `default:"1GiB" placeholder:"SIZE" help:"Local disk for caching remote blocks."`
	KeepMAC           []string        `name:"keep-mac" placeholder:"MAC" help:"MACs the KVM domain keeps (default: the source VM's)."`
	NoSerialConsole   bool            `help:"Do not add console=ttyS0 to the guest's kernel command line."`
	KeepState         bool            `help:"Keep OUTPUT/.h2kvm (overlays, cache, job record) after success."`
	JSON              bool            `help:"Report progress as JSON lines on stdout; the last line is the job record."`
}

func (c *MigrateCmd) Help() string {
	return `Runs FETCH → FLATTEN → INSPECT → PLAN → FIX → CONVERT → VALIDATE:

  FETCH     resolve SOURCE into a VM: disks (VMDK chains) and hardware (CPUs, memory, MACs)
  FLATTEN   serve each chain as an NBD export with a copy-on-write overlay (source never written)
  INSPECT   attach the exports to libguestfs and derive the guest's facts
  PLAN      derive the fixes (printed before anything changes)
  FIX       apply them into the overlays: fstab, bootloader, initramfs with virtio, network,
            VMware tools, SELinux relabel
  CONVERT   qemu-img from the overlays straight to OUTPUT/NAME.qcow2 (no intermediate copy)
  VALIDATE  write OUTPUT/NAME.xml (libvirt), check it with virt-xml-validate, and with
            --boot-test boot it under libvirtd and prove login prompt and network

Each stage is recorded; after a crash or Ctrl-C, --resume continues with the same overlays.

Exit codes: 0 done; 1 other errors; 2 bad input (missing parent, corrupt image, bad usage);
3 the guest cannot be made bootable (nothing was converted); 4 the boot test failed.`
}

func (c *MigrateCmd) Run(ctx context.Context, g *Globals) error {
	p := newProgress(g.Stdout, os.Stderr, c.JSON, "convert")
	events := func(e migrate.Event) {
		switch {
		case c.JSON && e.Status != "progress":
			json.NewEncoder(g.Stdout).Encode(e)
		case e.Status == "progress":
			p.update(e.Percent)
		case e.Status == "start":
			g.Log.Info("stage", "stage", e.Stage)
		case e.Status == "plan":
			fmt.Fprintf(os.Stderr, "  plan: %s\n", e.Message)
		case e.Status == "change":
			g.Log.Info("changed", "stage", e.Stage, "change", e.Message)
		case e.Status == "warning":
			g.Log.Warn(e.Message, "stage", e.Stage)
		case e.Status == "failed":
			p.done()
		case e.Status == "done" || e.Status == "skipped":
			if e.Stage == migrate.Convert {
				p.done()
			}
			g.Log.Info("stage "+e.Status, "stage", e.Stage, "note", e.Message)
		}
	}
	if c.Name != "" {
		if err := validName(c.Name); err != nil {
			return err
		}
	}
	tg, err := all.Lookup(c.Target)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUsage, err)
	}
	cfg, err := source.ConfigFromEnv()
	if err != nil {
		return err
	}
	cfg.AllowOutsideDisks = cfg.AllowOutsideDisks || c.AllowOutsideDisks
	job, err := migrate.Run(ctx, migrate.Options{
		Source: c.Source, SourceConfig: cfg, OutputDir: c.Output, Name: c.Name, Server: c.Server, Target: tg,
		Format: c.Format, Compress: c.Compress, BootTest: c.BootTest, BootTimeout: c.BootTimeout,
		Resume: c.Resume, DryRun: c.DryRun, Skip: c.Skip, Snapshot: c.Snapshot, VerifyDisks: c.VerifyDisks,
		NoVerifyDisks: c.NoVerifyDisks, CacheLimit: int64(c.CacheLimit), KeepState: c.KeepState,
		Plan:   fixers.PlanOptions{KeepMACs: c.KeepMAC, NoSerialConsole: c.NoSerialConsole},
		Fixers: fixerall.Fixers(),
		Log:    g.Log,
		Events: events,
	})
	if job != nil {
		if c.JSON {
			json.NewEncoder(g.Stdout).Encode(job)
		} else if err == nil {
			summary(g, job)
		}
	}
	return err
}

func summary(g *Globals, j *migrate.Job) {
	w := g.Stdout
	for _, o := range j.Outputs {
		fmt.Fprintf(w, "disk:   %s\n", o)
	}
	if j.Domain != "" {
		fmt.Fprintf(w, "domain: %s\n", j.Domain)
	}
	fmt.Fprintf(w, "report: %s/report.md\n", j.Output)
	if j.Fixes != nil {
		fmt.Fprintf(w, "fixes:  %d changes\n", len(j.Fixes.Changes))
	}
	if b := j.Boot; b != nil {
		fmt.Fprintf(w, "boot:   login prompt after %s, %s after %s\n", b.Evidence.LoginAfter.Round(time.Second), b.Evidence.SSHBanner, b.Evidence.SSHAfter.Round(time.Second))
	}
	fmt.Fprintf(w, "bytes:  virtual %s, fetched %s, overlay %s, output %s, peak staging %s\n",
		humanBytes(j.VirtualBytes), humanBytes(j.FetchedBytes), humanBytes(j.OverlayBytes), humanBytes(j.OutputBytes), humanBytes(j.PeakStagingBytes))
}

// maxNameLen bounds --name: the outputs add a suffix and must stay below NAME_MAX (255).
const maxNameLen = 200

// validName checks a --name: it becomes OUTPUT/NAME.qcow2, NAME.xml and the domain name, so it
// must be one plain file name: [A-Za-z0-9._-], not starting with '.' or '-' (no "..", no
// hidden file, nothing a tool could take for an option), at most maxNameLen bytes.
func validName(name string) error {
	if name == "" || len(name) > maxNameLen {
		return usageErrorf("--name %q: want 1 to %d characters", name, maxNameLen)
	}
	if name[0] == '.' || name[0] == '-' {
		return usageErrorf("--name %q: must not start with '.' or '-'", name)
	}
	for _, c := range []byte(name) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return usageErrorf("--name %q: only letters, digits, '.', '-' and '_' are allowed (no path separators)", name)
		}
	}
	return nil
}
