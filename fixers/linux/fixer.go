package linux

import (
	"context"
	"encoding/json"
	"fmt"

	"libguestfs.org/guestfs"

	"github.com/h2kvm/h2kvm/fixers"
)

// Fixer is the fixers.Fixer of Linux guests over Inspect, Plan and Apply. Its facts are the
// JSON of *Facts, its plan data the JSON of *FixPlan.
type Fixer struct{}

// New returns the Linux fixer.
func New() *Fixer { return &Fixer{} }

var _ fixers.Fixer = (*Fixer)(nil)

// Name is "linux".
func (*Fixer) Name() string { return "linux" }

// Detect accepts a guest with a Linux root.
func (*Fixer) Detect(d *fixers.Detection) bool {
	for _, r := range d.Roots {
		if r.Type == "linux" {
			return true
		}
	}
	return false
}

// Inspect runs Inspect and encodes the facts.
func (*Fixer) Inspect(ctx context.Context, g *guestfs.Guestfs) (*fixers.Inspection, error) {
	f, err := Inspect(ctx, g)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(f)
	if err != nil {
		return nil, fmt.Errorf("linux: encoding facts: %w", err)
	}
	return &fixers.Inspection{Facts: b, Firmware: f.Firmware}, nil
}

// Plan decodes the facts and runs Plan.
func (*Fixer) Plan(facts fixers.Facts, opt fixers.PlanOptions) (*fixers.Plan, error) {
	f, err := decodeFacts(facts)
	if err != nil {
		return nil, err
	}
	p, err := Plan(f, PlanOptions{KeepMACs: opt.KeepMACs, NoSerialConsole: opt.NoSerialConsole})
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("linux: encoding plan: %w", err)
	}
	out := &fixers.Plan{Data: b, PlanSummary: fixers.PlanSummary{Fixes: []fixers.PlannedFix{}, Warnings: p.Warnings}}
	for _, x := range p.Fixes {
		out.Fixes = append(out.Fixes, fixers.PlannedFix{ID: x.ID, Reason: x.Reason, Files: x.Files})
	}
	return out, nil
}

// Apply decodes facts and plan and runs Apply.
func (*Fixer) Apply(ctx context.Context, g *guestfs.Guestfs, facts fixers.Facts, plan json.RawMessage, onChange func(fixers.Change)) (*fixers.Report, error) {
	f, err := decodeFacts(facts)
	if err != nil {
		return &fixers.Report{}, err
	}
	var p FixPlan
	if err := json.Unmarshal(plan, &p); err != nil {
		return &fixers.Report{}, fmt.Errorf("linux: decoding plan: %v: %w", err, ErrPlan)
	}
	p.Facts = f
	var opts []ApplyOption
	if onChange != nil {
		opts = append(opts, OnChange(onChange))
	}
	return Apply(ctx, g, &p, opts...)
}

func decodeFacts(facts fixers.Facts) (*Facts, error) {
	if len(facts) == 0 {
		return nil, fmt.Errorf("linux: no facts: %w", ErrPlan)
	}
	var f Facts
	if err := json.Unmarshal(facts, &f); err != nil {
		return nil, fmt.Errorf("linux: decoding facts: %v: %w", err, ErrPlan)
	}
	return &f, nil
}
