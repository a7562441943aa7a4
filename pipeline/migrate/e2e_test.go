package migrate

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"libguestfs.org/guestfs"

	"github.com/h2kvm/h2kvm/fixers"
	"github.com/h2kvm/h2kvm/internal/testenv"
)

// stampFixer is a fixer only this test registers. It handles any guest libguestfs calls
// linux whose os-release says ID=stampos, reads its hostname at INSPECT and writes a stamp
// file at FIX: a whole fixer lifecycle on a real appliance, with no Linux fixer code.
type stampFixer struct{}

type stampFacts struct {
	Root     string `json:"root"`
	Hostname string `json:"hostname"`
}

type stampPlan struct {
	Root  string `json:"root"`
	Stamp string `json:"stamp"`
}

func (stampFixer) Name() string { return "stamp" }

func (stampFixer) Detect(d *fixers.Detection) bool {
	for _, r := range d.Roots {
		if r.Type == "linux" {
			return true
		}
	}
	return false
}

func gfsErr(err error) error {
	var ge *guestfs.GuestfsError
	if errors.As(err, &ge) && ge == nil {
		return nil
	}
	return err
}

func (stampFixer) Inspect(ctx context.Context, g *guestfs.Guestfs) (*fixers.Inspection, error) {
	roots, err := g.Inspect_os()
	if err := gfsErr(err); err != nil || len(roots) != 1 {
		return nil, fmt.Errorf("stamp: roots %v: %v", roots, err)
	}
	if err := gfsErr(g.Mount_ro(roots[0], "/")); err != nil {
		return nil, err
	}
	defer g.Umount_all()
	osr, err := g.Cat("/etc/os-release")
	if err := gfsErr(err); err != nil {
		return nil, err
	}
	if !strings.Contains(osr, "ID=stampos\n") {
		return nil, fmt.Errorf("stamp: not a stampos guest: %w", fixers.ErrUnsupported)
	}
	host, err := g.Cat("/etc/hostname")
	if err := gfsErr(err); err != nil {
		return nil, err
	}
	b, err := json.Marshal(stampFacts{Root: roots[0], Hostname: strings.TrimSpace(host)})
	return &fixers.Inspection{Facts: b, Firmware: "bios"}, err
}

func (stampFixer) Plan(facts fixers.Facts, opt fixers.PlanOptions) (*fixers.Plan, error) {
	var f stampFacts
	if err := json.Unmarshal(facts, &f); err != nil {
		return nil, err
	}
	b, err := json.Marshal(stampPlan{Root: f.Root, Stamp: "fixed " + f.Hostname})
	p := &fixers.Plan{Data: b}
	p.Fixes = []fixers.PlannedFix{{ID: "stamp", Reason: "prove the seam", Files: []string{"/etc/stamp"}}}
	return p, err
}

func (stampFixer) Apply(ctx context.Context, g *guestfs.Guestfs, _ fixers.Facts, plan json.RawMessage, onChange func(fixers.Change)) (*fixers.Report, error) {
	var p stampPlan
	rep := &fixers.Report{}
	if err := json.Unmarshal(plan, &p); err != nil {
		return rep, err
	}
	if err := gfsErr(g.Mount(p.Root, "/")); err != nil {
		return rep, err
	}
	defer g.Umount_all()
	if err := gfsErr(g.Write("/etc/stamp", []byte(p.Stamp+"\n"))); err != nil {
		return rep, err
	}
	c := fixers.Change{Fix: "stamp", File: "/etc/stamp", Action: fixers.ActionCreate, After: p.Stamp}
	rep.Add(c)
	if onChange != nil {
		onChange(c)
	}
	return rep, nil
}

// stampGuest builds a small VMware-style disk (monolithicSparse VMDK) holding a root
// filesystem libguestfs recognises as Linux.
func stampGuest(t *testing.T, dir string) string {
	t.Helper()
	testenv.NeedTool(t, "guestfish", "qemu-img")
	raw := filepath.Join(dir, "disk.raw")
	cmd := exec.Command(testenv.ToolPath(t, "guestfish"), "-N", raw+"=fs:ext4:64M", "-m", "/dev/sda1")
	cmd.Stdin = strings.NewReader(`mkdir-p /etc
mkdir-p /bin
mkdir-p /usr/bin
write /etc/fstab "/dev/sda1 / ext4 defaults 0 1\n"
write /etc/os-release "ID=stampos\nNAME=Stamp\nVERSION_ID=1\n"
write /etc/hostname "stamp-guest\n"
`)
	cmd.Env = append(os.Environ(), "LIBGUESTFS_BACKEND=direct")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("guestfish: %v\n%s", err, out)
	}
	vmdk := filepath.Join(dir, "stamp.vmdk")
	testenv.Run(t, dir, "qemu-img", "convert", "-O", "vmdk", "-o", "subformat=monolithicSparse", raw, vmdk)
	os.Remove(raw)
	return vmdk
}

func fileHash(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// TestSeamsEndToEnd runs a whole migration of a real disk with a fixer and a target that only
// this test registers: detection picks the fixer, its facts and plan travel through the job
// record, its change lands in the output through the overlay, and VALIDATE hands the outputs
// to the target. Nothing of Linux or libvirt is involved.
func TestSeamsEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("launches the libguestfs appliance")
	}
	t.Setenv("LIBGUESTFS_BACKEND", "direct")
	src := stampGuest(t, t.TempDir())
	before := fileHash(t, src)
	out := filepath.Join(t.TempDir(), "out")
	tgt := &fakeTarget{}
	var changes []string
	job, err := Run(t.Context(), Options{
		Source:    src,
		OutputDir: out,
		Name:      "stamp",
		Fixers:    []fixers.Fixer{stampFixer{}},
		Target:    tgt,
		Events: func(e Event) {
			if e.Status == "change" {
				changes = append(changes, e.Message)
			}
		},
	})
	if err != nil {
		t.Fatalf("migrate: %v", err)
	}
	for _, s := range Stages {
		if r := job.Stages[s]; r.Status != "done" {
			t.Errorf("stage %s: %+v", s, r)
		}
	}
	if job.Fixer != "stamp" || job.Target != "fake" || job.GuestFirmware != "bios" {
		t.Errorf("job: fixer %q target %q firmware %q", job.Fixer, job.Target, job.GuestFirmware)
	}
	var facts stampFacts
	if err := json.Unmarshal(job.Facts, &facts); err != nil || facts.Hostname != "stamp-guest" {
		t.Errorf("facts %s: %v", job.Facts, err)
	}
	if job.Fixes == nil || len(job.Fixes.Changes) != 1 || len(changes) != 1 {
		t.Errorf("fixes %+v, change events %q", job.Fixes, changes)
	}
	if len(tgt.in) != 1 || len(tgt.validated) != 1 || len(tgt.in[0].Disks) != 1 {
		t.Fatalf("target saw inputs %+v, validated %+v", tgt.in, tgt.validated)
	}
	disk := tgt.in[0].Disks[0]
	if !strings.HasPrefix(disk, out) {
		t.Errorf("target got disk %q, not in %s", disk, out)
	}
	got := testenv.Run(t, "", "guestfish", "--ro", "-a", disk, "-m", "/dev/sda1", "cat", "/etc/stamp")
	if strings.TrimSpace(got) != "fixed stamp-guest" {
		t.Errorf("output's /etc/stamp = %q", got)
	}
	if fileHash(t, src) != before {
		t.Error("the source disk was modified")
	}
	rep, err := os.ReadFile(filepath.Join(out, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var back Job
	if err := json.Unmarshal(rep, &back); err != nil {
		t.Fatal(err)
	}
	var plan stampPlan
	if err := json.Unmarshal(back.Plan, &plan); err != nil || back.Fixer != "stamp" || back.Target != "fake" || plan.Stamp != "fixed stamp-guest" {
		t.Errorf("report.json: fixer %q target %q plan %s (%v)", back.Fixer, back.Target, back.Plan, err)
	}
}
