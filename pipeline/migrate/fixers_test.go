package migrate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"libguestfs.org/guestfs"

	"github.com/h2kvm/h2kvm/fixers"
	"github.com/h2kvm/h2kvm/pipeline"
)

// testFixer is a fixer registered only in these tests: it handles "testos" guests and keeps
// facts and plans of its own shape, which the pipeline must carry without knowing it.
type testFixer struct{}

type testFacts struct {
	Hostname string `json:"hostname"`
	Files    []string
}

type testPlan struct {
	Touch []string `json:"touch"`
}

func (testFixer) Name() string { return "testos" }

func (testFixer) Detect(d *fixers.Detection) bool {
	for _, r := range d.Roots {
		if r.Type == "testos" {
			return true
		}
	}
	return false
}

func (testFixer) Inspect(context.Context, *guestfs.Guestfs) (*fixers.Inspection, error) {
	b, err := json.Marshal(testFacts{Hostname: "h", Files: []string{"/etc/a", "/etc/b"}})
	return &fixers.Inspection{Facts: b, Firmware: "uefi"}, err
}

func (testFixer) Plan(facts fixers.Facts, opt fixers.PlanOptions) (*fixers.Plan, error) {
	var f testFacts
	if err := json.Unmarshal(facts, &f); err != nil {
		return nil, fmt.Errorf("testos: plan: %w", err)
	}
	if len(f.Files) == 0 {
		return nil, fmt.Errorf("testos: plan: nothing to boot: %w", fixers.ErrNotBootable)
	}
	b, err := json.Marshal(testPlan{Touch: f.Files})
	p := &fixers.Plan{Data: b}
	p.Fixes = append(p.Fixes, fixers.PlannedFix{ID: "touch", Reason: "because", Files: f.Files})
	p.Warnings = []string{"keep " + strings.Join(opt.KeepMACs, ",")}
	return p, err
}

func (testFixer) Apply(_ context.Context, _ *guestfs.Guestfs, _ fixers.Facts, plan json.RawMessage, onChange func(fixers.Change)) (*fixers.Report, error) {
	var p testPlan
	if err := json.Unmarshal(plan, &p); err != nil {
		return &fixers.Report{}, err
	}
	r := &fixers.Report{}
	for _, f := range p.Touch {
		c := fixers.Change{Fix: "touch", File: f, Action: fixers.ActionCreate, After: "x"}
		r.Add(c)
		if onChange != nil {
			onChange(c)
		}
	}
	return r, nil
}

// TestFixerSeam: a fixer the pipeline does not know is chosen by detection, and its facts
// and plan travel through the job record (report.json) as opaque JSON and back to it.
func TestFixerSeam(t *testing.T) {
	reg := []fixers.Fixer{testFixer{}}
	r := &runner{opt: Options{Fixers: reg}}
	if got := r.fixerList(); len(got) != 1 || got[0].Name() != "testos" {
		t.Fatalf("fixerList = %v", got)
	}
	if got := (&runner{}).fixerList(); len(got) == 0 || got[0].Name() != "linux" {
		t.Fatalf("default fixerList = %v, want the shipped fixers", got)
	}
	fx, err := fixers.Choose(&fixers.Detection{Roots: []fixers.Root{{Device: "/dev/sda1", Type: "testos"}}}, reg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fixers.Choose(&fixers.Detection{Roots: []fixers.Root{{Device: "/dev/sda1", Type: "linux"}}}, reg); !isRefusal(err) {
		t.Errorf("a guest no registered fixer handles: %v, want a refusal", err)
	}
	in, err := fx.Inspect(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := fx.Plan(in.Facts, fixers.PlanOptions{KeepMACs: []string{"m"}})
	if err != nil {
		t.Fatal(err)
	}
	j := &Job{ID: "j", Stages: map[Stage]StageRecord{}, Fixer: fx.Name(), Facts: in.Facts, GuestFirmware: in.Firmware,
		Plan: p.Data, PlanSummary: &p.PlanSummary}
	b, err := json.Marshal(j)
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	if string(raw["facts"]) != string(in.Facts) || string(raw["plan"]) != string(p.Data) || string(raw["fixer"]) != `"testos"` {
		t.Errorf("report.json keys: facts %s plan %s fixer %s", raw["facts"], raw["plan"], raw["fixer"])
	}
	var back Job
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.GuestFirmware != "uefi" || back.PlanSummary == nil || len(back.PlanSummary.Fixes) != 1 {
		t.Fatalf("job record did not round-trip: %+v", back)
	}
	again := fixers.ByName(reg, back.Fixer)
	if again == nil {
		t.Fatalf("fixer %q not found again", back.Fixer)
	}
	var changes []fixers.Change
	rep, err := again.Apply(t.Context(), nil, back.Facts, back.Plan, func(c fixers.Change) { changes = append(changes, c) })
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Changes) != 2 || len(changes) != 2 || changes[1].File != "/etc/b" {
		t.Errorf("apply from the record: %+v, callbacks %+v", rep.Changes, changes)
	}
	md := markdown(&back)
	if !strings.Contains(md, "- **touch**: because (/etc/a, /etc/b)\n") || !strings.Contains(md, "- warning: keep m\n") ||
		!strings.Contains(md, `"hostname": "h"`) {
		t.Errorf("report.md lacks the plan or facts:\n%s", md)
	}
}

// TestRefusalSentinels: the pipeline tests the fixers-level sentinels only.
func TestRefusalSentinels(t *testing.T) {
	_, err := testFixer{}.Plan(json.RawMessage(`{"hostname":"h"}`), fixers.PlanOptions{})
	got := notBootable("plan", err)
	if !errors.Is(got, pipeline.ErrGuestNotBootable) || !errors.Is(got, fixers.ErrNotBootable) {
		t.Errorf("notBootable(%v) = %v", err, got)
	}
	other := notBootable("plan", errors.New("appliance died"))
	if errors.Is(other, pipeline.ErrGuestNotBootable) {
		t.Errorf("a plain failure became a refusal: %v", other)
	}
}
