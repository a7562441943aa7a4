package migrate

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/h2kvm/h2kvm/fixers"
	"github.com/h2kvm/h2kvm/store"
)

// nmWifi is a NetworkManager keyfile whose VMware MAC the network fix comments out; it holds
// the Wi-Fi PSK and the 802.1x password in the file, as system connections do.
const nmWifi = `[connection]
id=office
type=wifi

[wifi]
mac-address=00:50:56:aa:bb:cc
ssid=office

[wifi-security]
key-mgmt=wpa-psk
psk=hunter2-psk

[802-1x]
password=hunter2-8021x
`

// TestFixRecordRedactsSecrets: a change recorded in FIX whose file holds secrets reaches
// neither the job record nor the reports with them, whether the fixer redacted them or not.
func TestFixRecordRedactsSecrets(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := store.Open(filepath.Join(dir, "job.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	r := &runner{db: db, log: slog.Default(), job: &Job{ID: "j1", Output: dir, Stages: map[Stage]StageRecord{}}}
	// Built by hand, not with Report.Add: a fixer that does not redact is covered too.
	c := fixers.Change{Fix: "network", File: "/etc/NetworkManager/system-connections/office.nmconnection",
		Action: fixers.ActionModify, Before: nmWifi,
		After: strings.Replace(nmWifi, "mac-address=00:50:56:aa:bb:cc", "#mac-address=00:50:56:aa:bb:cc  # h2kvm", 1)}
	rec := r.newFixRecorder(ctx)
	rec.record(c)
	var saved Job
	if err := db.Job(ctx, jobKey, &saved); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(saved)
	if strings.Contains(string(b), "hunter2") {
		t.Errorf("the job record holds a secret: %s", b)
	}
	rec.finish(&fixers.Report{Changes: []fixers.Change{c}})
	if err := writeReports(r.job); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"report.json", "report.md"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), "hunter2") {
			t.Errorf("%s holds a secret:\n%s", name, b)
		}
		if !strings.Contains(string(b), "#mac-address=00:50:56:aa:bb:cc") || !strings.Contains(string(b), "psk=[redacted]") {
			t.Errorf("%s lost the change:\n%s", name, b)
		}
	}
}

// TestReportsPrivate: report.json and report.md are 0600, also over an older report of
// another mode; the output folder Run makes is 0700.
func TestReportsPrivate(t *testing.T) {
	dir := t.TempDir()
	old := filepath.Join(dir, "report.json")
	if err := os.WriteFile(old, []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeReports(&Job{ID: "j1", Output: dir, Stages: map[Stage]StageRecord{}}); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Errorf("output folder holds %v, want the two reports", ents)
	}
	for _, name := range []string{"report.json", "report.md"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", name, fi.Mode().Perm())
		}
	}

	out := filepath.Join(t.TempDir(), "out")
	// A resume without a job fails right after the output folder and the job record are made.
	if _, err := Run(context.Background(), Options{Source: "vm.vmx", OutputDir: out, Resume: true}); err == nil {
		t.Fatal("resume without a job did not fail")
	}
	for p, want := range map[string]os.FileMode{out: 0o700, filepath.Join(out, ".h2kvm"): 0o700, filepath.Join(out, ".h2kvm", "job.db"): 0o600} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode().Perm(), want)
		}
	}
}
