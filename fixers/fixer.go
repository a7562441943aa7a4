package fixers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"libguestfs.org/guestfs"
)

// Refusal sentinels shared by every fixer. A fixer's own sentinels wrap (or are) these, so
// that callers test them with errors.Is without knowing which fixer ran. All are permanent for
// a given guest: retrying does not help.
var (
	// ErrNoOS: inspection found no operating system on the disks.
	ErrNoOS = errors.New("no operating system found")
	// ErrUnsupported: no fixer can handle the guest (an OS without a registered fixer, an
	// unknown distribution, an architecture the appliance cannot run, ...).
	ErrUnsupported = errors.New("unsupported guest")
	// ErrNotBootable: the guest cannot boot on KVM with virtio and no fixer can change that.
	ErrNotBootable = errors.New("guest not bootable on virtio")
)

// IsRefusal reports whether err is one of the refusal sentinels: the guest cannot be migrated,
// and nothing was changed.
func IsRefusal(err error) bool {
	return errors.Is(err, ErrNoOS) || errors.Is(err, ErrUnsupported) || errors.Is(err, ErrNotBootable)
}

// Facts are what a fixer's Inspect found, as JSON. They are opaque to the pipeline, which
// stores them and hands them back to the same fixer's Plan and Apply.
type Facts = json.RawMessage

// Inspection is what a fixer's Inspect returns: the opaque facts and the little the pipeline
// itself needs to know of the guest.
type Inspection struct {
	Facts Facts `json:"facts"`
	// Firmware the guest boots with: "bios", "uefi", or "" when unknown.
	Firmware string `json:"firmware,omitempty"`
}

// PlanOptions are the plan options the pipeline knows, common to every fixer.
type PlanOptions struct {
	// KeepMACs are MAC addresses the KVM domain keeps from the source VM.
	KeepMACs []string `json:"keep_macs,omitempty"`
	// NoSerialConsole: do not add a serial console to the guest's boot configuration.
	NoSerialConsole bool `json:"no_serial_console,omitempty"`
}

// PlannedFix is the summary of one planned fix, for people: "ID: reason (files)".
type PlannedFix struct {
	ID     string   `json:"id"`
	Reason string   `json:"reason"`
	Files  []string `json:"files"`
}

// String is "ID: reason (file, file)".
func (f PlannedFix) String() string {
	return fmt.Sprintf("%s: %s (%s)", f.ID, f.Reason, strings.Join(f.Files, ", "))
}

// PlanSummary is what a plan does, for people: its fixes in plan order and its warnings.
type PlanSummary struct {
	Fixes    []PlannedFix `json:"fixes"`
	Warnings []string     `json:"warnings,omitempty"`
}

// Plan is a fixer's plan: Data is the fixer's own plan as JSON (opaque to the pipeline, handed
// back to the fixer's Apply), PlanSummary its summary.
type Plan struct {
	Data json.RawMessage `json:"data"`
	PlanSummary
}

// Root is one operating system libguestfs's inspection found.
type Root struct {
	Device string `json:"device"` // the root filesystem, as libguestfs names it
	Type   string `json:"type"`   // inspect_get_type: linux, windows, ...
	Distro string `json:"distro,omitempty"`
}

// Detection is the result of inspecting the disks for operating systems, made once per guest
// (DetectOS) and shown to every fixer's Detect.
type Detection struct {
	Roots []Root `json:"roots"`
}

// Types lists the distinct OS types found, sorted.
func (d *Detection) Types() []string {
	set := map[string]bool{}
	for _, r := range d.Roots {
		set[r.Type] = true
	}
	var out []string
	for t := range set {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// Fixer makes guests of one kind (one OS family) boot on KVM. Implementations follow the
// contract of the package doc (offline, idempotent, every change recorded).
type Fixer interface {
	// Name identifies the fixer in job records ("linux"); it is stable across versions.
	Name() string
	// Detect reports whether the fixer handles the guest. It is pure: no guest access.
	Detect(d *Detection) bool
	// Inspect examines the guest read-only on a launched handle and returns its facts.
	Inspect(ctx context.Context, g *guestfs.Guestfs) (*Inspection, error)
	// Plan derives the fixes from facts made by this fixer's Inspect; it changes nothing. A
	// guest the fixer cannot make boot is refused with an error wrapping a refusal sentinel.
	Plan(facts Facts, opt PlanOptions) (*Plan, error)
	// Apply makes the planned fixes (plan.Data of a Plan made from facts) on a handle whose
	// drives are writable. onChange, if not nil, sees each change as it is made. The report
	// is returned also on error, holding what was done.
	Apply(ctx context.Context, g *guestfs.Guestfs, facts Facts, plan json.RawMessage, onChange func(Change)) (*Report, error)
}

// ByName returns the fixer called name among fx, or nil.
func ByName(fx []Fixer, name string) Fixer {
	for _, f := range fx {
		if f.Name() == name {
			return f
		}
	}
	return nil
}

// DetectOS runs libguestfs's inspection (inspect_os, inspect_get_type) on a launched handle.
// It mounts nothing; mounts a previous user left are removed first.
func DetectOS(g *guestfs.Guestfs) (*Detection, error) {
	g.Umount_all()
	roots, err := g.Inspect_os()
	if err = gerr(err); err != nil {
		return nil, fmt.Errorf("fixers: inspect_os: %w", err)
	}
	d := &Detection{Roots: []Root{}}
	for _, r := range roots {
		t, err := g.Inspect_get_type(r)
		if err = gerr(err); err != nil {
			return nil, fmt.Errorf("fixers: %s: inspect_get_type: %w", r, err)
		}
		distro, _ := g.Inspect_get_distro(r)
		d.Roots = append(d.Roots, Root{Device: r, Type: t, Distro: distro})
	}
	return d, nil
}

// Choose picks the first fixer of fx whose Detect accepts d. A disk without an OS is refused
// with ErrNoOS, an OS no fixer handles ("no fixer for windows guests") with ErrUnsupported.
func Choose(d *Detection, fx []Fixer) (Fixer, error) {
	if d == nil || len(d.Roots) == 0 {
		return nil, fmt.Errorf("fixers: %w", ErrNoOS)
	}
	for _, f := range fx {
		if f.Detect(d) {
			return f, nil
		}
	}
	return nil, fmt.Errorf("fixers: no fixer for %s guests: %w", strings.Join(d.Types(), "/"), ErrUnsupported)
}

// Select detects the guest's OS once (DetectOS) and chooses its fixer among fx (Choose).
func Select(ctx context.Context, g *guestfs.Guestfs, fx []Fixer) (Fixer, *Detection, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	d, err := DetectOS(g)
	if err != nil {
		return nil, nil, err
	}
	f, err := Choose(d, fx)
	return f, d, err
}

// gerr turns a typed-nil *guestfs.GuestfsError into a plain nil.
func gerr(err error) error {
	var ge *guestfs.GuestfsError
	if errors.As(err, &ge) && ge == nil {
		return nil
	}
	return err
}
