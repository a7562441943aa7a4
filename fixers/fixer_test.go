package fixers_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"libguestfs.org/guestfs"

	"github.com/h2kvm/h2kvm/fixers"
)

// typeFixer is a fixer that accepts guests with a root of its type.
type typeFixer struct{ typ string }

func (f typeFixer) Name() string { return f.typ }
func (f typeFixer) Detect(d *fixers.Detection) bool {
	for _, r := range d.Roots {
		if r.Type == f.typ {
			return true
		}
	}
	return false
}
func (typeFixer) Inspect(context.Context, *guestfs.Guestfs) (*fixers.Inspection, error) {
	return nil, errors.New("not used")
}
func (typeFixer) Plan(fixers.Facts, fixers.PlanOptions) (*fixers.Plan, error) {
	return nil, errors.New("not used")
}
func (typeFixer) Apply(context.Context, *guestfs.Guestfs, fixers.Facts, json.RawMessage, func(fixers.Change)) (*fixers.Report, error) {
	return nil, errors.New("not used")
}

func TestChoose(t *testing.T) {
	reg := []fixers.Fixer{typeFixer{"linux"}, typeFixer{"freebsd"}}
	roots := func(types ...string) *fixers.Detection {
		d := &fixers.Detection{}
		for i, t := range types {
			d.Roots = append(d.Roots, fixers.Root{Device: "/dev/sda" + string(rune('1'+i)), Type: t})
		}
		return d
	}
	for _, tc := range []struct {
		name    string
		d       *fixers.Detection
		want    string
		err     error
		message string
	}{
		{"linux", roots("linux"), "linux", nil, ""},
		{"dual boot", roots("windows", "freebsd"), "freebsd", nil, ""},
		{"no os", roots(), "", fixers.ErrNoOS, "no operating system"},
		{"windows", roots("windows"), "", fixers.ErrUnsupported, "no fixer for windows guests"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := fixers.Choose(tc.d, reg)
			if tc.err != nil {
				if !errors.Is(err, tc.err) || !fixers.IsRefusal(err) || !strings.Contains(err.Error(), tc.message) {
					t.Fatalf("err %v, want %v containing %q", err, tc.err, tc.message)
				}
				return
			}
			if err != nil || f.Name() != tc.want {
				t.Fatalf("got %v, %v; want %s", f, err, tc.want)
			}
		})
	}
	if f := fixers.ByName(reg, "freebsd"); f == nil || f.Name() != "freebsd" {
		t.Errorf("ByName(freebsd) = %v", f)
	}
	if f := fixers.ByName(reg, "windows"); f != nil {
		t.Errorf("ByName(windows) = %v", f)
	}
}
