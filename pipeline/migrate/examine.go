package migrate

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/h2kvm/h2kvm/daemon"
	"github.com/h2kvm/h2kvm/fixers"
	"github.com/h2kvm/h2kvm/fixers/all"
	"github.com/h2kvm/h2kvm/fixers/gfs"
	"github.com/h2kvm/h2kvm/pipeline/host"
	"github.com/h2kvm/h2kvm/pipeline/machine"
	"github.com/h2kvm/h2kvm/vfs/source"
)

// Examination is what `h2kvm inspect` and `h2kvm plan` report: the VM, the guest's facts and
// the fixes a migration would make. Nothing is written: the disks are attached read-only.
type Examination struct {
	VM *machine.VM `json:"vm"`
	// Fixer names the fixer chosen for the guest; Facts and Plan are its facts and plan data
	// (opaque JSON: for Linux the JSON of linux.Facts and linux.FixPlan), PlanSummary the
	// plan's fixes and warnings.
	Fixer       string              `json:"fixer,omitempty"`
	Facts       json.RawMessage     `json:"facts"`
	Plan        json.RawMessage     `json:"plan,omitempty"`
	PlanSummary *fixers.PlanSummary `json:"plan_summary,omitempty"`
	// Refusal says why the guest cannot be migrated (no OS, unsupported, no virtio kernel);
	// the plan is then empty.
	Refusal  string   `json:"refusal,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
}

// ExamineOptions configure Examine.
type ExamineOptions struct {
	Snapshot string
	// VerifyDisks checks OVA/OVF disks completely against the manifest first.
	VerifyDisks bool
	CacheLimit  int64
	// Source configures the sources (credentials, TLS); the CLI builds it from the environment.
	Source source.Config
	Plan   fixers.PlanOptions
	// Fixers are the guest fixers to choose from; nil means all.Fixers().
	Fixers []fixers.Fixer
	Log    *slog.Logger
}

// Examine inspects the guest on src's disks through read-only exports of an embedded daemon
// and derives the plan. A guest the fixers refuse is not an error: Refusal says why, and the
// error returned wraps pipeline.ErrGuestNotBootable so that callers can set the exit code.
func Examine(ctx context.Context, src string, opt ExamineOptions) (*Examination, error) {
	var ex Examination
	var err error
	ex.VM, err = ResolveVM(ctx, src, opt.Source, ResolveOptions{Snapshot: opt.Snapshot, VerifyDisks: opt.VerifyDisks,
		Warn: func(m string) { ex.Warnings = append(ex.Warnings, m) }})
	if err != nil {
		return nil, err
	}
	for _, d := range ex.VM.Disks {
		if m := d.Manifest; m != nil && m.State == machine.DigestUnverified {
			ex.Warnings = append(ex.Warnings, fmt.Sprintf("disk file %s is not verified against the manifest here (only the parts read are): migrate checks it, or ask for --verify-disks", m.File))
		}
	}
	emb, err := daemon.StartEmbedded(ctx, daemon.EmbeddedOptions{CacheLimit: opt.CacheLimit, Source: opt.Source, Logger: opt.Log})
	if err != nil {
		return nil, err
	}
	defer emb.Close()
	var drives []gfs.Drive
	for i, d := range ex.VM.Disks {
		name := fmt.Sprintf("disk%d", i)
		if _, err := emb.CreateExport(ctx, daemon.ExportSpec{Name: name, Source: d.Source, ReadOnly: true, Transient: true}); err != nil {
			return nil, err
		}
		drives = append(drives, gfs.NBD(emb.Socket, name, true))
	}
	kvm, _ := host.CheckKVM(ctx)
	sess, err := gfs.Open(ctx, gfs.Options{ForceTCG: !kvm, Identifier: "inspect"}, drives...)
	if err != nil {
		return nil, err
	}
	defer sess.Close()
	fxs := opt.Fixers
	if fxs == nil {
		fxs = all.Fixers()
	}
	fx, _, err := fixers.Select(ctx, sess.G(), fxs)
	if err == nil {
		ex.Fixer = fx.Name()
		var in *fixers.Inspection
		if in, err = fx.Inspect(ctx, sess.G()); err == nil {
			ex.Facts = in.Facts
		}
	}
	if err != nil {
		if isRefusal(err) {
			ex.Refusal = err.Error()
			return &ex, notBootable("inspect", err)
		}
		return nil, err
	}
	popt := opt.Plan
	if len(popt.KeepMACs) == 0 {
		for _, n := range ex.VM.NICs {
			if n.MAC != "" {
				popt.KeepMACs = append(popt.KeepMACs, n.MAC)
			}
		}
	}
	p, err := fx.Plan(ex.Facts, popt)
	if err != nil {
		ex.Refusal = err.Error()
		return &ex, notBootable("plan", err)
	}
	ex.Plan, ex.PlanSummary = p.Data, &p.PlanSummary
	return &ex, nil
}
