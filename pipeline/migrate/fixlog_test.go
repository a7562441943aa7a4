package migrate

import (
	"context"
	"log/slog"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/h2kvm/h2kvm/fixers"
	"github.com/h2kvm/h2kvm/store"
)

func TestMergeFixes(t *testing.T) {
	fstab := fixers.Change{Fix: "fstab", File: "/etc/fstab", Action: fixers.ActionModify, Before: "/dev/sda1 /", After: "UUID=1 /"}
	link := fixers.Change{Fix: "network", File: "/etc/systemd/network/10-h2kvm.link", Action: fixers.ActionCreate, After: "[Match]"}
	grubA := fixers.Change{Fix: "grub-default", File: "/etc/default/grub", Action: fixers.ActionModify, Before: "A", After: "B"}
	grubB := fixers.Change{Fix: "grub-default", File: "/etc/default/grub", Action: fixers.ActionModify, Before: "B", After: "C"}
	purge := fixers.Change{Fix: "vmware-tools", File: "dpkg --purge open-vm-tools", Action: fixers.ActionRun, Before: "installed", After: "1", Seconds: 3}
	purge2 := purge
	purge2.After, purge2.Seconds = "2", 4
	initrd := fixers.Change{Fix: "initramfs", File: "/boot/initrd.img", Action: fixers.ActionRegenerate, Before: "old", After: "new", Seconds: 9}
	rep := func(w []string, cs ...fixers.Change) *fixers.Report {
		return &fixers.Report{Changes: cs, Warnings: w}
	}

	for _, tc := range []struct {
		name       string
		prior, run *fixers.Report
		want       *fixers.Report
	}{
		{"nothing", nil, nil, nil},
		{"fresh job", nil, rep(nil, fstab, link), rep(nil, fstab, link)},
		{"killed before any change", rep(nil), rep(nil, fstab), rep(nil, fstab)},
		// The killed run's write reached the overlay: the resumed fixer records nothing for it.
		{"change kept by the overlay", rep(nil, fstab), rep(nil, link, initrd), rep(nil, fstab, link, initrd)},
		// The killed run's write did not reach the overlay: the same change is made again.
		{"change made again", rep(nil, fstab, link), rep(nil, fstab, link, initrd), rep(nil, fstab, link, initrd)},
		// A change continued: the first Before, the last After.
		{"change continued", rep(nil, grubA), rep(nil, grubB), rep(nil, fixers.Change{Fix: "grub-default", File: "/etc/default/grub", Action: fixers.ActionModify, Before: "A", After: "C"})},
		{"command run again", rep(nil, purge), rep(nil, purge2), rep(nil, purge2)},
		// Two changes of one file by one fix in the resumed run: the first continues the prior
		// one, the second is its own.
		{"two in the resumed run", rep(nil, grubA), rep(nil, grubA, grubB), rep(nil, grubA, grubB)},
		{"warnings once", rep([]string{"w1"}, fstab), rep([]string{"w1", "w2"}), rep([]string{"w1", "w2"}, fstab)},
		{"nothing resumed", rep(nil, fstab), nil, rep(nil, fstab)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var priorCopy *fixers.Report
			if tc.prior != nil {
				priorCopy = &fixers.Report{Changes: append([]fixers.Change(nil), tc.prior.Changes...)}
			}
			got := mergeFixes(tc.prior, tc.run)
			if tc.want == nil {
				if got != nil {
					t.Fatalf("got %+v, want nil", got)
				}
				return
			}
			if got == nil {
				t.Fatal("got nil")
			}
			if len(tc.want.Changes) == 0 {
				tc.want.Changes = []fixers.Change{}
			}
			if !reflect.DeepEqual(got.Changes, tc.want.Changes) {
				t.Errorf("changes:\n got %+v\nwant %+v", got.Changes, tc.want.Changes)
			}
			if !reflect.DeepEqual(got.Warnings, tc.want.Warnings) {
				t.Errorf("warnings %q, want %q", got.Warnings, tc.want.Warnings)
			}
			if priorCopy != nil && !reflect.DeepEqual(priorCopy.Changes, tc.prior.Changes) {
				t.Errorf("prior modified")
			}
			// Merging is idempotent in the resumed-again sense: the merged record as prior of
			// a run that changes nothing gives the same changes.
			if again := mergeFixes(got, nil); !reflect.DeepEqual(again.Changes, got.Changes) {
				t.Errorf("merge of the merged record with an empty run: %+v", again.Changes)
			}
		})
	}
}

func TestMergeFixesSeconds(t *testing.T) {
	prior := &fixers.Report{Seconds: map[string]float64{"fstab": 1, "network": 2}}
	run := &fixers.Report{Seconds: map[string]float64{"network": 5}}
	got := mergeFixes(prior, run)
	if !reflect.DeepEqual(got.Seconds, map[string]float64{"fstab": 1, "network": 5}) {
		t.Errorf("seconds %v", got.Seconds)
	}
	if prior.Seconds["network"] != 2 {
		t.Errorf("prior modified")
	}
}

// TestFixRecorderPersists: each change is in the job database as soon as it is recorded (a kill
// after it loses nothing), and a resumed run's recorder starts from what the database holds.
func TestFixRecorderPersists(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "job.db")
	db, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var events []Event
	r := &runner{db: db, log: slog.Default(), job: &Job{ID: "j1", Stages: map[Stage]StageRecord{}},
		opt: Options{Events: func(e Event) { events = append(events, e) }}}
	fstab := fixers.Change{Fix: "fstab", File: "/etc/fstab", Action: fixers.ActionModify, Before: "a", After: "b"}
	link := fixers.Change{Fix: "network", File: "/etc/x.link", Action: fixers.ActionCreate, After: "l"}
	initrd := fixers.Change{Fix: "initramfs", File: "/boot/initrd.img", Action: fixers.ActionRegenerate, Before: "o", After: "n"}

	saved := func() *Job {
		t.Helper()
		var j Job
		if err := db.Job(ctx, jobKey, &j); err != nil {
			t.Fatal(err)
		}
		return &j
	}
	rec := r.newFixRecorder(ctx)
	rec.record(fstab)
	if j := saved(); j.Fixes == nil || !reflect.DeepEqual(j.Fixes.Changes, []fixers.Change{fstab}) {
		t.Fatalf("after one change the database holds %+v", j.Fixes)
	}
	rec.record(link)
	// The process is killed here. A resumed run loads the record and finds fstab and the link
	// file fixed (nothing recorded for them) and regenerates the initramfs.
	db.Close()
	db, err = store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	r2 := &runner{db: db, log: slog.Default(), job: saved()}
	rec2 := r2.newFixRecorder(ctx)
	rec2.record(initrd)
	rec2.finish(&fixers.Report{Changes: []fixers.Change{initrd}, Warnings: []string{"w"}})
	r2.save(ctx)
	want := []fixers.Change{fstab, link, initrd}
	if j := saved(); !reflect.DeepEqual(j.Fixes.Changes, want) || len(j.Fixes.Warnings) != 1 {
		t.Fatalf("resumed record: %+v, want %+v", j.Fixes, want)
	}
	if len(events) != 2 || events[0].Status != "change" || events[0].Message != fstab.String() {
		t.Errorf("events %+v", events)
	}
}
