package integration

// End-to-end tests of `h2kvm migrate` against real components: the debian-bios test guest
// (tools/guestbuild), libguestfs, qemu-img, libvirtd, a running `h2kvm serve`, and govmomi's
// vCenter simulator serving the chain over HTTPS. All are gated behind H2KVM_INTEGRATION=1.
//
// That a naive conversion of the same chain does not boot is asserted once, by
// integration/bootcheck's TestNaiveConversionFails; these tests do not repeat it.
//
// The fixers' writes are not byte-reproducible (ext4 timestamps, dpkg's log, the initramfs'
// cpio times), so two migrations that each run FIX never produce identical disks. Outputs are
// compared with `qemu-img compare` only where the same bytes must come out: a migration with
// --skip fix against `qemu-img convert` of the chain, and a resumed conversion against the
// fixed export it converts.

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/h2kvm/h2kvm/daemon"
	"github.com/h2kvm/h2kvm/fixers"
	"github.com/h2kvm/h2kvm/pipeline/migrate"
)

// migrateTimeout bounds one migrate process: under TCG on a loaded 2-core machine inspect takes
// up to 4 min, fix 6 min and the boot test 5 min.
const migrateTimeout = 40 * time.Minute

// TestMigrateLocal is the one full migration: debian-bios from local files, with the boot test.
func TestMigrateLocal(t *testing.T) {
	needIntegration(t)
	needTool(t, "virsh", "virt-xml-validate", "sha256sum")
	g := migrateGuest(t)
	before := fileSums(t, g.Chain...)
	out := filepath.Join(t.TempDir(), "out")

	s := sampleDir(out)
	m := runMigrate(t, migrateEnv(), migrateTimeout, g.Top, "--output", out, "--boot-test")
	s.finish()
	if m.code != 0 {
		t.Fatalf("migrate exited %d after %v\n%s", m.code, m.elapsed.Round(time.Second), tail(m.stderr.String(), 6000))
	}
	j := readReport(t, out)
	if pj := m.job(); pj == nil || pj.ID != j.ID {
		t.Errorf("the last --json line is not the job record of report.json")
	}

	// Outputs, and nothing else: the state folder is gone after success.
	name := j.Name
	want := []string{name + ".qcow2", name + ".xml", "report.json", "report.md"}
	var got []string
	ents, _ := os.ReadDir(out)
	for _, e := range ents {
		got = append(got, e.Name())
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("output folder holds %v, want %v", got, want)
	}
	disk := filepath.Join(out, name+".qcow2")
	if len(j.Outputs) != 1 || j.Outputs[0] != disk {
		t.Errorf("report outputs %v, want [%s]", j.Outputs, disk)
	}
	format, virtual, actual := qemuImgInfo(t, disk)
	if format != "qcow2" || virtual != g.Manifest.VirtualSize || actual >= virtual {
		t.Errorf("qemu-img info %s: format %s, virtual %d (want %d), on disk %d", disk, format, virtual, g.Manifest.VirtualSize, actual)
	}

	// Every stage done, the plan, the changes with before and after, the boot evidence.
	for _, st := range migrate.Stages {
		if r := j.Stages[st]; r.Status != "done" {
			t.Errorf("stage %s: %+v, want done", st, r)
		}
	}
	checkFixed(t, j)
	setReferenceFixes(j.Fixes)
	if b := j.Boot; b == nil || !b.Evidence.LoginPrompt || !strings.HasPrefix(b.Evidence.SSHBanner, "SSH-2.0-") {
		t.Errorf("boot evidence: %+v", j.Boot)
	}
	md, _ := os.ReadFile(filepath.Join(out, "report.md"))
	for _, w := range []string{"## Plan", "## Changes", "Before:", "After:", "## Boot test", "SSH-2.0-"} {
		if !strings.Contains(string(md), w) {
			t.Errorf("report.md lacks %q", w)
		}
	}
	if x, _ := os.ReadFile(filepath.Join(out, name+".xml")); !strings.Contains(string(x), disk) {
		t.Errorf("%s.xml does not name %s", name, disk)
	}

	if fileSums(t, g.Chain...) != before {
		t.Fatal("the source VMDK files changed")
	}

	// Staging: no file near the disk's size but the output, and the state folder bounded by
	// the overlay (local sources are not cached) plus a margin for the database, the boot
	// test's overlay and the serial log.
	for p, n := range s.peakFile {
		if strings.HasPrefix(filepath.Base(p), name+".qcow2") || strings.HasPrefix(filepath.Base(p), "."+name+".qcow2.part-") {
			continue
		}
		if n > j.AllocatedBytes/4 {
			t.Errorf("%s reached %s on disk during the run (the chain holds %s)", p, mib(n), mib(j.AllocatedBytes))
		}
	}
	const margin = 96 << 20
	if s.peakState > j.OverlayBytes+j.FetchedBytes+margin {
		t.Errorf("OUTPUT/.h2kvm peaked at %s: more than overlay %s + fetched %s + %s", mib(s.peakState), mib(j.OverlayBytes), mib(j.FetchedBytes), mib(margin))
	}

	// Numbers.
	boot := 0.0
	if j.Boot != nil {
		boot = j.Boot.Seconds
	}
	noBoot := m.elapsed.Seconds() - boot
	naive := timed(t, "qemu-img", "convert", "-O", "qcow2", g.Top, filepath.Join(t.TempDir(), "naive.qcow2"))
	t.Logf("migrate with boot test: %v (boot test %.0fs); without boot test %.0fs vs plain `qemu-img convert` of the chain %.1fs (%.0fx; its CONVERT stage alone %.1fs); stages: %s",
		m.elapsed.Round(time.Second), boot, noBoot, naive.Seconds(), noBoot/naive.Seconds(), j.Stages[migrate.Convert].Seconds, stageTimes(j))
	t.Logf("virtual %s, allocated %s, overlay %s, output %s; peak staging %s (state dir sampled %d times by the test: %s) = %.3f of the virtual size",
		mib(j.VirtualBytes), mib(j.AllocatedBytes), mib(j.OverlayBytes), mib(j.OutputBytes), mib(j.PeakStagingBytes), s.samples, mib(s.peakState),
		float64(max(s.peakState, j.PeakStagingBytes))/float64(j.VirtualBytes))
}

// checkFixed checks the plan and the recorded changes of the debian-bios guest. A resumed job
// must pass it too: the changes of a killed FIX are kept in the job record.
func checkFixed(t *testing.T, j *migrate.Job) {
	t.Helper()
	if j.PlanSummary == nil || len(j.PlanSummary.Fixes) == 0 {
		t.Fatalf("report has no plan")
	}
	if j.Fixes == nil || len(j.Fixes.Changes) == 0 {
		t.Fatalf("report has no changes")
	}
	var fstab bool
	for _, c := range j.Fixes.Changes {
		if c.Action == "modify" && (c.Before == "" || c.After == "" || c.Before == c.After) {
			t.Errorf("change %s of %s lacks a before/after: %q → %q", c.Fix, c.File, c.Before, c.After)
		}
		if c.File == "/etc/fstab" {
			fstab = strings.Contains(c.Before, "/dev/disk/by-path/") && strings.Contains(c.After, "UUID=") && !strings.Contains(c.After, "/dev/disk/by-path/")
		}
	}
	if !fstab {
		t.Errorf("no change of /etc/fstab from by-path names to UUIDs")
	}
}

func stageTimes(j *migrate.Job) string {
	var b strings.Builder
	for _, s := range migrate.Stages {
		if r, ok := j.Stages[s]; ok {
			b.WriteString(string(s) + " " + (time.Duration(r.Seconds * float64(time.Second))).Round(100*time.Millisecond).String() + " ")
		}
	}
	return strings.TrimSpace(b.String())
}

// TestMigrateResume kills migrate (SIGKILL) during FIX and during CONVERT and resumes it; on the
// way the output folder (a 50 MiB tmpfs) fills up. The exports live in a running `h2kvm serve`
// (--server). The resumed conversion must equal the fixed export as the killed run left it.
func TestMigrateResume(t *testing.T) {
	needIntegration(t)
	needTool(t, "mount", "umount", "sha256sum")
	g := migrateGuest(t)
	before := fileSums(t, g.Chain...)
	out := filepath.Join(t.TempDir(), "out")
	mountTmpfs(t, out, "50M")

	sd := shortDir(t)
	ctl, nbd := filepath.Join(sd, "ctl.sock"), filepath.Join(sd, "nbd.sock")
	srv := startH2KVM(t, nil, "serve", "--state-dir", t.TempDir(), "--control", ctl, "--nbd-socket", nbd)
	c := controlClient(ctl)
	waitReady(t, srv, c)
	env := migrateEnv()
	args := []string{g.Top, "--output", out, "--server", ctl, "--compress"}
	start := time.Now()

	// The changes of an uninterrupted FIX, to compare the resumed report with.
	ref := referenceFixes(t, g.Top)

	// 1. Killed during FIX, after it changed files and removed VMware's tools (a guest command
	// that dpkg syncs): a few seconds into the regeneration of the initramfs.
	changed, ran := make(chan struct{}), make(chan struct{})
	m := startMigrate(t, env, func(e event) {
		if e.Stage == migrate.Fix && e.Status == "change" {
			closeOnce(changed)
			if strings.HasPrefix(e.Message, "run ") {
				closeOnce(ran)
			}
		}
	}, args...)
	select {
	case <-changed:
	case <-m.done:
		t.Fatalf("migrate ended (exit %d) before FIX changed anything\n%s", m.code, tail(m.stderr.String(), 4000))
	case <-time.After(migrateTimeout):
		t.Fatal("FIX changed nothing")
	}
	select {
	case <-ran:
	case <-m.done:
	case <-time.After(2 * time.Minute):
	}
	time.Sleep(5 * time.Second)
	m.kill(t)
	if m.saw(migrate.Fix, "done", "") {
		t.Fatal("FIX was done before the kill")
	}
	killedChanges := m.count(migrate.Fix, "change")
	// The libguestfs appliance goes with it.
	noProcsUsing(t, exportName(t, c))
	noProcsUsing(t, out)
	t.Logf("killed in FIX after %v", time.Since(start).Round(time.Second))

	// 2. Resumed: FIX is redone from INSPECT; CONVERT fills the 50 MiB output folder.
	m = runMigrate(t, env, migrateTimeout, append(args, "--resume")...)
	if m.code == 0 {
		t.Fatalf("migrate into a 50 MiB folder succeeded")
	}
	if !m.saw(migrate.Fetch, "done", "resumed") || !m.saw(migrate.Fix, "done", "") || !m.saw(migrate.Convert, "failed", "") {
		t.Fatalf("resumed run: want FETCH resumed, FIX done, CONVERT failed; events %+v", m.events)
	}
	if msg := m.stderr.String(); !strings.Contains(msg, "output folder is full") || !strings.Contains(msg, "No space left") {
		t.Errorf("full output folder: unclear message:\n%s", tail(msg, 2000))
	}
	j := readReport(t, out)
	if names := outputNames(t, out); !slices.Equal(names, []string{"report.json", "report.md"}) {
		t.Errorf("a failed conversion left %v in the output folder", names)
	}
	// Every change of the killed FIX and of the resumed one is listed once, with its before and
	// after: the same as an uninterrupted FIX.
	sameFixes(t, j.Fixes, ref)
	t.Logf("the killed FIX recorded %d changes, the resumed FIX made %d; the report lists %d (an uninterrupted FIX: %d)",
		killedChanges, m.count(migrate.Fix, "change"), len(j.Fixes.Changes), len(ref.Changes))
	if fileSums(t, g.Chain...) != before {
		t.Fatal("the source VMDK files changed")
	}
	fixStart := j.Stages[migrate.Fix].Started
	t.Logf("resumed, FIX done, CONVERT failed on the full folder after %v: %s", time.Since(start).Round(time.Second), j.Stages[migrate.Convert].Error)

	// 3. Room made; resumed again and killed during CONVERT. The fixed export is converted
	// directly as the reference.
	runCmd(t, "", "mount", "-o", "remount,size=2G", out)
	refDisk := filepath.Join(t.TempDir(), "ref.qcow2")
	runCmd(t, "", "qemu-img", "convert", "-f", "raw", "-O", "qcow2", "nbd+unix:///"+j.Exports[0]+"?socket="+nbd, refDisk)
	converting := make(chan struct{})
	m = startMigrate(t, env, func(e event) {
		if e.Kind == "progress" && e.Percent >= 2 && e.Percent < 90 {
			select {
			case <-converting:
			default:
				close(converting)
			}
		}
	}, append(args, "--resume")...)
	select {
	case <-converting:
	case <-m.done:
		t.Fatalf("migrate ended (exit %d) before converting\n%s", m.code, tail(m.stderr.String(), 4000))
	case <-time.After(migrateTimeout):
		t.Fatal("CONVERT did not start")
	}
	m.kill(t)
	if !m.saw(migrate.Fix, "done", "resumed") {
		t.Errorf("FIX was not taken as done on resume: events %+v", m.events)
	}
	noProcsUsing(t, out)
	if _, err := os.Stat(filepath.Join(out, j.Name+".qcow2")); err == nil {
		t.Fatal("the conversion ended before the kill: cannot test a resume during CONVERT")
	}

	// 4. Resumed to the end.
	m = runMigrate(t, env, migrateTimeout, append(args, "--resume")...)
	if m.code != 0 {
		t.Fatalf("final resume exited %d\n%s", m.code, tail(m.stderr.String(), 4000))
	}
	j = readReport(t, out)
	for _, st := range migrate.Stages {
		if r := j.Stages[st]; r.Status != "done" {
			t.Errorf("stage %s: %+v, want done", st, r)
		}
	}
	if !j.Stages[migrate.Fix].Started.Equal(fixStart) {
		t.Errorf("FIX was redone after it completed")
	}
	checkFixed(t, j)
	sameFixes(t, j.Fixes, ref)
	// report.md has a heading per change (the files it quotes may hold "### " lines of their own).
	md, _ := os.ReadFile(filepath.Join(out, "report.md"))
	for _, c := range j.Fixes.Changes {
		if n := strings.Count(string(md), "\n### "+c.String()+"\n"); n != 1 {
			t.Errorf("report.md has %d headings for change %s, want 1", n, c)
		}
	}
	disk := filepath.Join(out, j.Name+".qcow2")
	sameContent(t, disk, refDisk)
	if names := outputNames(t, out); !slices.Equal(names, []string{j.Name + ".qcow2", j.Name + ".xml", "report.json", "report.md"}) {
		t.Errorf("output folder after the resume: %v", names)
	}
	if st, b := api(t, c, "GET", "/v1/exports", nil); st != http.StatusOK || strings.Contains(string(b), j.ID) {
		t.Errorf("the job's exports are left on the server: %d %s", st, b)
	}
	if fileSums(t, g.Chain...) != before {
		t.Fatal("the source VMDK files changed")
	}
	t.Logf("killed in FIX, full folder, killed in CONVERT, resumed: %v in all; the resumed output equals the fixed export", time.Since(start).Round(time.Second))
}

// exportName returns the name of the one export on the server.
func exportName(t *testing.T, c *http.Client) string {
	t.Helper()
	st, b := api(t, c, "GET", "/v1/exports", nil)
	var list []daemon.ExportInfo
	if err := json.Unmarshal(b, &list); st != http.StatusOK || err != nil || len(list) != 1 {
		t.Fatalf("exports on the server: %d %s", st, b)
	}
	return list[0].Name
}

// outputNames lists the output folder without its state folder, sorted.
func outputNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		if e.Name() != ".h2kvm" {
			names = append(names, e.Name())
		}
	}
	return names
}

// mountTmpfs mounts a tmpfs of size on dir for the test (root only).
func mountTmpfs(t *testing.T, dir, size string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		if os.Getenv("H2KVM_REQUIRE_TOOLS") != "" {
			t.Fatalf("mount a tmpfs (needs root): %v: %s", err, out)
		}
		t.Skipf("cannot mount a tmpfs (needs root): %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
}

// TestMigrateRemote migrates the chain served over HTTPS by the vCenter simulator's datastore
// /folder endpoint: first a dry run (only what inspection reads is fetched), then a migration
// with --skip fix whose output must equal `qemu-img convert` of the local chain.
func TestMigrateRemote(t *testing.T) {
	needIntegration(t)
	g := migrateGuest(t)
	urls, venv := vcsimDatastore(t, g.Chain...)
	top := urls[len(urls)-1]
	env := migrateEnv(venv...)
	const cacheLimit = 64 << 20
	naive := filepath.Join(t.TempDir(), "naive.qcow2")
	naiveTime := timed(t, "qemu-img", "convert", "-O", "qcow2", g.Top, naive)

	// Dry run: stops after PLAN, no output, nothing left behind but the reports.
	dry := filepath.Join(t.TempDir(), "dry")
	m := runMigrate(t, env, migrateTimeout, top, "--output", dry, "--dry-run", "--cache-limit", "64MiB")
	if m.code != 0 {
		t.Fatalf("dry run exited %d\n%s", m.code, tail(m.stderr.String(), 4000))
	}
	if names := outputNames(t, dry); !slices.Equal(names, []string{"report.json", "report.md"}) {
		t.Errorf("dry run left %v", names)
	}
	if _, err := os.Stat(filepath.Join(dry, ".h2kvm")); err == nil {
		t.Errorf("dry run left its state folder")
	}
	j := readReport(t, dry)
	for _, st := range []migrate.Stage{migrate.Fetch, migrate.Flatten, migrate.Inspect, migrate.Plan} {
		if r := j.Stages[st]; r.Status != "done" {
			t.Errorf("dry run: stage %s: %+v", st, r)
		}
	}
	for _, st := range []migrate.Stage{migrate.Fix, migrate.Convert, migrate.Validate} {
		if r, ok := j.Stages[st]; ok {
			t.Errorf("dry run ran stage %s: %+v", st, r)
		}
	}
	if j.PlanSummary == nil || len(j.PlanSummary.Fixes) == 0 || j.Fixes != nil {
		t.Errorf("dry run: plan %+v, changes %+v", j.PlanSummary, j.Fixes)
	}
	if j.FetchedBytes <= 0 || j.FetchedBytes >= j.AllocatedBytes/2 {
		t.Errorf("dry run fetched %s of %s allocated", mib(j.FetchedBytes), mib(j.AllocatedBytes))
	}
	t.Logf("remote dry run: %v (inspect %s); fetched %s of %s allocated (%.3f)", m.elapsed.Round(time.Second),
		stageTimes(j), mib(j.FetchedBytes), mib(j.AllocatedBytes), float64(j.FetchedBytes)/float64(j.AllocatedBytes))

	// Migration without FIX: the same bytes as qemu-img's reading of the local chain.
	out := filepath.Join(t.TempDir(), "out")
	s := sampleDir(out)
	m = runMigrate(t, env, migrateTimeout, top, "--output", out, "--skip", "fix", "--skip", "validate", "--cache-limit", "64MiB")
	s.finish()
	if m.code != 0 {
		t.Fatalf("migrate exited %d\n%s", m.code, tail(m.stderr.String(), 4000))
	}
	j = readReport(t, out)
	for st, want := range map[migrate.Stage]string{migrate.Fetch: "done", migrate.Flatten: "done", migrate.Inspect: "done",
		migrate.Plan: "done", migrate.Fix: "skipped", migrate.Convert: "done", migrate.Validate: "skipped"} {
		if r := j.Stages[st]; r.Status != want {
			t.Errorf("stage %s: %+v, want %s", st, r, want)
		}
	}
	if len(j.Outputs) != 1 {
		t.Fatalf("outputs %v", j.Outputs)
	}
	sameContent(t, j.Outputs[0], naive)
	if s.peakState > cacheLimit+j.OverlayBytes+32<<20 {
		t.Errorf("OUTPUT/.h2kvm peaked at %s with a %s cache limit", mib(s.peakState), mib(cacheLimit))
	}
	ratio := float64(j.FetchedBytes) / float64(j.AllocatedBytes)
	if ratio < 0.5 || ratio > 3 {
		t.Errorf("fetched %s for %s allocated", mib(j.FetchedBytes), mib(j.AllocatedBytes))
	}
	t.Logf("remote migrate --skip fix: %v (%s) vs local `qemu-img convert` %.1fs; fetched %s of %s allocated (%.2f); peak staging %s (sampled: %s) with a %s cache = %.3f of the virtual size %s",
		m.elapsed.Round(time.Second), stageTimes(j), naiveTime.Seconds(), mib(j.FetchedBytes), mib(j.AllocatedBytes), ratio,
		mib(j.PeakStagingBytes), mib(s.peakState), mib(cacheLimit), float64(max(j.PeakStagingBytes, s.peakState))/float64(j.VirtualBytes), mib(j.VirtualBytes))
}

// referenceFixes returns the changes of an uninterrupted FIX of the debian-bios guest: those of
// TestMigrateLocal when it ran in this process, else those of a migration run now.
func referenceFixes(t *testing.T, top string) *fixers.Report {
	t.Helper()
	refFixes.Lock()
	defer refFixes.Unlock()
	if refFixes.r != nil {
		return refFixes.r
	}
	out := filepath.Join(t.TempDir(), "ref")
	m := runMigrate(t, migrateEnv(), migrateTimeout, top, "--output", out, "--skip", "validate")
	if m.code != 0 {
		t.Fatalf("reference migration exited %d\n%s", m.code, tail(m.stderr.String(), 4000))
	}
	j := readReport(t, out)
	checkFixed(t, j)
	refFixes.r = j.Fixes
	t.Logf("reference migration (uninterrupted): %v, %d changes", m.elapsed.Round(time.Second), len(j.Fixes.Changes))
	return refFixes.r
}

var refFixes struct {
	sync.Mutex
	r *fixers.Report
}

func setReferenceFixes(r *fixers.Report) {
	refFixes.Lock()
	defer refFixes.Unlock()
	if refFixes.r == nil && r != nil {
		refFixes.r = r
	}
}

// sameFixes fails the test unless got lists the same changes as want, each once: the same fix,
// file and action, and for file edits the same before and after. Regenerated files and guest
// commands differ in their digests and output between runs; only their presence is compared.
//
// A grub.cfg that grub-mkconfig writes in the libguestfs appliance carries BIOS drive hints
// (set root='hdN,msdos1', --hint-bios=hdN,…) that follow how grub-probe numbers the appliance's
// disks, which differs between appliance launches; the guest finds its root by UUID
// (search --fs-uuid) either way, so the hints are compared with their drive numbers removed.
func sameFixes(t *testing.T, got, want *fixers.Report) {
	t.Helper()
	if got == nil {
		t.Fatalf("report has no changes; an uninterrupted FIX made %d", len(want.Changes))
	}
	key := func(c fixers.Change) string { return c.Fix + " " + c.Action + " " + c.File }
	left := map[string][]fixers.Change{}
	for _, c := range want.Changes {
		left[key(c)] = append(left[key(c)], c)
	}
	for _, c := range got.Changes {
		w := left[key(c)]
		if len(w) == 0 {
			t.Errorf("change %s: not made by an uninterrupted FIX, or listed twice", c)
			continue
		}
		left[key(c)] = w[1:]
		switch c.Action {
		case fixers.ActionModify, fixers.ActionCreate, fixers.ActionDelete:
			if grubHints(c.Before) != grubHints(w[0].Before) || grubHints(c.After) != grubHints(w[0].After) {
				t.Errorf("change %s: before/after differ from an uninterrupted FIX:\n%q → %q\nwant\n%q → %q", c, c.Before, c.After, w[0].Before, w[0].After)
			}
		}
	}
	for k, w := range left {
		for range w {
			t.Errorf("change %s: made by an uninterrupted FIX, missing from the report", k)
		}
	}
}

func closeOnce(c chan struct{}) {
	select {
	case <-c:
	default:
		close(c)
	}
}

// TestMigrateBadInput: bad sources fail with exit 2 or 3 and a message naming the problem, and
// nothing is converted.
func TestMigrateBadInput(t *testing.T) {
	needIntegration(t)
	needTool(t, "qemu-img")
	noDisk := func(t *testing.T, out string) {
		t.Helper()
		ents, _ := os.ReadDir(out)
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), ".qcow2") || strings.Contains(e.Name(), ".part-") {
				t.Errorf("output folder holds %s", e.Name())
			}
		}
	}

	t.Run("missing parent", func(t *testing.T) {
		dir := t.TempDir()
		top := smallChain(t, dir)
		if err := os.Rename(filepath.Join(dir, "base.vmdk"), filepath.Join(dir, "moved.vmdk")); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(t.TempDir(), "out")
		m := runMigrate(t, migrateEnv(), 5*time.Minute, top, "--output", out)
		if msg := m.stderr.String(); m.code != 2 || !strings.Contains(msg, "base.vmdk") {
			t.Fatalf("exit %d, want 2 and a message naming base.vmdk:\n%s", m.code, msg)
		}
		noDisk(t, out)
		t.Logf("%v: %s", m.elapsed.Round(time.Millisecond), lastLine(m.stderr.String()))

		// Through a running daemon: the same exit code.
		sd := shortDir(t)
		ctl, nbd := filepath.Join(sd, "ctl.sock"), filepath.Join(sd, "nbd.sock")
		srv := startH2KVM(t, nil, "serve", "--state-dir", t.TempDir(), "--control", ctl, "--nbd-socket", nbd)
		waitReady(t, srv, controlClient(ctl))
		out = filepath.Join(t.TempDir(), "out")
		ms := runMigrate(t, migrateEnv(), 5*time.Minute, top, "--output", out, "--server", ctl)
		if msg := ms.stderr.String(); ms.code != m.code || !strings.Contains(msg, "base.vmdk") {
			t.Fatalf("with --server: exit %d, want %d (as without) and a message naming base.vmdk:\n%s", ms.code, m.code, msg)
		}
		noDisk(t, out)
		t.Logf("with --server: %v: %s", ms.elapsed.Round(time.Millisecond), lastLine(ms.stderr.String()))
	})

	t.Run("unreachable server", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "out")
		m := runMigrate(t, migrateEnv("H2KVM_TLS_INSECURE=1", "H2KVM_VSPHERE_USER=u", "H2KVM_VSPHERE_PASSWORD=p"), 5*time.Minute,
			"https://127.0.0.1:1/folder/x.vmdk?dcPath=DC0&dsName=ds", "--output", out)
		if msg := m.stderr.String(); m.code == 0 || !strings.Contains(msg, "127.0.0.1:1") || !strings.Contains(msg, "refused") {
			t.Fatalf("exit %d, want an error naming 127.0.0.1:1, connection refused:\n%s", m.code, msg)
		}
		noDisk(t, out)
		t.Logf("exit %d after %v: %s", m.code, m.elapsed.Round(time.Millisecond), lastLine(m.stderr.String()))
	})

	t.Run("outputs exist", func(t *testing.T) {
		top := smallChain(t, t.TempDir())
		out := t.TempDir()
		old := filepath.Join(out, "top.qcow2")
		if err := os.WriteFile(old, []byte("an earlier output"), 0o644); err != nil {
			t.Fatal(err)
		}
		m := runMigrate(t, migrateEnv(), 5*time.Minute, top, "--output", out)
		if msg := m.stderr.String(); m.code == 0 || !strings.Contains(msg, old+" exists") || m.saw(migrate.Inspect, "start", "") {
			t.Fatalf("exit %d, want a failure before INSPECT naming %s:\n%s", m.code, old, msg)
		}
		if b, _ := os.ReadFile(old); string(b) != "an earlier output" {
			t.Fatal("the earlier output was overwritten")
		}
	})

	t.Run("no operating system", func(t *testing.T) {
		needTool(t, "guestfish")
		dir := t.TempDir()
		blank := filepath.Join(dir, "blank.vmdk")
		runCmd(t, "", "qemu-img", "create", "-q", "-f", "vmdk", blank, "64M")
		out := filepath.Join(t.TempDir(), "out")
		m := runMigrate(t, migrateEnv(), migrateTimeout, blank, "--output", out)
		if m.code != 3 {
			t.Fatalf("exit %d, want 3\n%s", m.code, tail(m.stderr.String(), 4000))
		}
		noDisk(t, out)
		j := readReport(t, out)
		// INSPECT or PLAN refuses the guest.
		ri, rp := j.Stages[migrate.Inspect], j.Stages[migrate.Plan]
		if !strings.Contains(ri.Error+rp.Error, "no operating system") {
			t.Errorf("neither INSPECT nor PLAN says the disk holds no operating system: %+v %+v", ri, rp)
		}
		if !strings.Contains(m.stderr.String(), "not bootable") {
			t.Errorf("the message does not say the guest is not bootable")
		}
		if _, ok := j.Stages[migrate.Convert]; ok {
			t.Errorf("a guest without an OS reached CONVERT")
		}
		t.Logf("%v: %s", m.elapsed.Round(time.Second), lastLine(m.stderr.String()))
	})
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// grubHintRE matches GRUB's BIOS drive names in hints: hd0, ahci1, ….
var grubHintRE = regexp.MustCompile(`\b(hd|ahci)[0-9]+,`)

// grubHints returns text with the drive numbers of GRUB's BIOS drive hints removed.
func grubHints(text string) string { return grubHintRE.ReplaceAllString(text, "${1}N,") }
