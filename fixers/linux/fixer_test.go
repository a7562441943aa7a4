package linux

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/h2kvm/h2kvm/fixers"
)

// TestFixerAdapter: the adapter's facts and plan data are the JSON of Facts and FixPlan, its
// summary the plan's fixes, and decoding them back gives the same plan.
func TestFixerAdapter(t *testing.T) {
	fx := New()
	if fx.Name() != "linux" {
		t.Fatalf("name %q", fx.Name())
	}
	if !fx.Detect(&fixers.Detection{Roots: []fixers.Root{{Device: "/dev/sda2", Type: "windows"}, {Device: "/dev/sda1", Type: "linux"}}}) {
		t.Error("Detect refused a guest with a Linux root")
	}
	if fx.Detect(&fixers.Detection{Roots: []fixers.Root{{Device: "/dev/sda2", Type: "windows"}}}) {
		t.Error("Detect accepted a Windows-only guest")
	}
	f := vmwareDebian()
	facts, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	// Reports print opaque facts re-indented: the same text as the facts printed directly.
	direct, _ := json.MarshalIndent(f, "", "  ")
	viaRaw, _ := json.MarshalIndent(json.RawMessage(facts), "", "  ")
	if string(direct) != string(viaRaw) {
		t.Errorf("facts print differently through json.RawMessage:\n%s\nwant\n%s", viaRaw, direct)
	}
	opt := fixers.PlanOptions{KeepMACs: []string{"00:50:56:a1:b2:01"}}
	p, err := fx.Plan(facts, opt)
	if err != nil {
		t.Fatal(err)
	}
	want, err := Plan(f, PlanOptions{KeepMACs: opt.KeepMACs})
	if err != nil {
		t.Fatal(err)
	}
	wantJSON, _ := json.Marshal(want)
	if string(p.Data) != string(wantJSON) {
		t.Errorf("plan data\n%s\nwant\n%s", p.Data, wantJSON)
	}
	if len(p.Fixes) != len(want.Fixes) {
		t.Fatalf("summary has %d fixes, plan %d", len(p.Fixes), len(want.Fixes))
	}
	for i, x := range want.Fixes {
		if got := p.Fixes[i]; got.ID != x.ID || got.Reason != x.Reason || !reflect.DeepEqual(got.Files, x.Files) {
			t.Errorf("summary fix %d = %+v, want %+v", i, got, x)
		}
	}
	var back FixPlan
	if err := json.Unmarshal(p.Data, &back); err != nil {
		t.Fatal(err)
	}
	back.Facts = want.Facts
	if !reflect.DeepEqual(&back, want) {
		t.Errorf("plan does not round-trip:\n%+v\nwant\n%+v", back, *want)
	}
}

func TestFixerAdapterRefusals(t *testing.T) {
	f := vmwareDebian()
	f.Kernels = nil
	facts, _ := json.Marshal(f)
	if _, err := New().Plan(facts, fixers.PlanOptions{}); !errors.Is(err, fixers.ErrNotBootable) {
		t.Errorf("no kernel: %v, want fixers.ErrNotBootable", err)
	}
	if _, err := New().Plan(nil, fixers.PlanOptions{}); !errors.Is(err, ErrPlan) || fixers.IsRefusal(err) {
		t.Errorf("no facts: %v, want ErrPlan and no refusal", err)
	}
	if _, err := New().Apply(t.Context(), nil, facts, json.RawMessage(`{`), nil); !errors.Is(err, ErrPlan) {
		t.Errorf("bad plan JSON: %v, want ErrPlan", err)
	}
}
