package migrate

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/h2kvm/h2kvm/pipeline"
	"github.com/h2kvm/h2kvm/pipeline/machine"
	"github.com/h2kvm/h2kvm/pipeline/target"
)

// fakeTarget is a target only the tests know: it records what VALIDATE hands it.
type fakeTarget struct {
	in        []target.Input
	validated []target.Result
}

func (*fakeTarget) Name() string { return "fake" }

func (f *fakeTarget) Write(ctx context.Context, in target.Input) (target.Result, error) {
	f.in = append(f.in, in)
	p := filepath.Join(in.OutputDir, in.Name+".fake")
	if err := os.WriteFile(p, []byte(strings.Join(in.Disks, "\n")), 0o644); err != nil {
		return target.Result{}, err
	}
	return target.Result{Target: "fake", Definition: p, Files: []string{p}}, nil
}

func (f *fakeTarget) Validate(ctx context.Context, res target.Result) error {
	f.validated = append(f.validated, res)
	return nil
}

// bootingFake can also boot-test; its guest never proves its boot.
type bootingFake struct {
	fakeTarget
	boots []target.BootOptions
}

func (b *bootingFake) BootTest(ctx context.Context, in target.Input, res target.Result, opt target.BootOptions) (target.BootResult, error) {
	b.boots = append(b.boots, opt)
	if _, err := os.Stat(opt.WorkDir); err != nil {
		return target.BootResult{}, err
	}
	return target.BootResult{Domain: "fake-" + in.Name, Seconds: 1}, pipeline.ErrBootTest
}

var (
	_ target.Target     = (*fakeTarget)(nil)
	_ target.BootTester = (*bootingFake)(nil)
)

func validateRunner(t *testing.T, opt Options, vm machine.VM) *runner {
	t.Helper()
	t.Setenv("H2KVM_KVM", "off")
	dir := t.TempDir()
	opt.OutputDir = dir
	state := filepath.Join(dir, ".h2kvm")
	if err := os.Mkdir(state, 0o755); err != nil {
		t.Fatal(err)
	}
	return &runner{opt: opt, state: state, job: &Job{ID: "j1", Name: "web01", Format: "raw", Output: dir, VM: &vm,
		Outputs: []string{filepath.Join(dir, "web01-disk0.raw"), filepath.Join(dir, "web01-disk1.raw")}}}
}

// TestValidateUsesTarget: VALIDATE hands the chosen target the outputs and the VM, records
// what it wrote, and the report keeps its keys.
func TestValidateUsesTarget(t *testing.T) {
	f := &fakeTarget{}
	r := validateRunner(t, Options{Target: f}, machine.VM{Name: "source", CPUs: 2})
	if err := r.validate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(f.in) != 1 || len(f.validated) != 1 {
		t.Fatalf("writes %d, validations %d", len(f.in), len(f.validated))
	}
	in := f.in[0]
	if in.Name != "web01" || in.VM.Name != "source" || in.VM.CPUs != 2 || in.Format != "raw" ||
		in.Firmware != "bios" || in.KVM || in.OutputDir != r.opt.OutputDir || len(in.Disks) != 2 {
		t.Errorf("input %+v", in)
	}
	for _, d := range in.Disks {
		if !filepath.IsAbs(d) {
			t.Errorf("disk %s not absolute", d)
		}
	}
	want := filepath.Join(r.opt.OutputDir, "web01.fake")
	if f.validated[0].Definition != want || r.job.Domain != want || r.job.Target != "fake" || r.job.Boot != nil {
		t.Errorf("validated %+v, job domain %q target %q boot %v", f.validated[0], r.job.Domain, r.job.Target, r.job.Boot)
	}
	if err := writeReports(r.job); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(r.opt.OutputDir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep map[string]any
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if rep["domain_xml"] != want || rep["target"] != "fake" {
		t.Errorf("report.json domain_xml %v target %v", rep["domain_xml"], rep["target"])
	}
	md, _ := os.ReadFile(filepath.Join(r.opt.OutputDir, "report.md"))
	if !strings.Contains(string(md), want) || !strings.Contains(string(md), "fake") {
		t.Errorf("report.md lacks the definition:\n%s", md)
	}

	// The VM's own firmware goes through.
	r = validateRunner(t, Options{Target: f}, machine.VM{Firmware: "efi"})
	if err := r.validate(context.Background()); err != nil || f.in[1].Firmware != "efi" {
		t.Errorf("firmware %q, err %v", f.in[1].Firmware, err)
	}
}

// TestValidateBootTest: a boot test needs a BootTester; its evidence is recorded also when it
// fails, and the error is the boot test's.
func TestValidateBootTest(t *testing.T) {
	r := validateRunner(t, Options{Target: &fakeTarget{}, BootTest: true}, machine.VM{})
	if err := r.validate(context.Background()); err == nil || !strings.Contains(err.Error(), "cannot boot-test") {
		t.Errorf("boot test with a target that cannot: %v", err)
	}

	b := &bootingFake{}
	r = validateRunner(t, Options{Target: b, BootTest: true, BootTimeout: 42}, machine.VM{})
	err := r.validate(context.Background())
	if !errors.Is(err, pipeline.ErrBootTest) {
		t.Fatalf("err %v, want ErrBootTest", err)
	}
	if len(b.boots) != 1 || b.boots[0].Timeout != 42 || !strings.HasPrefix(b.boots[0].WorkDir, r.state) {
		t.Errorf("boot options %+v", b.boots)
	}
	if _, err := os.Stat(b.boots[0].WorkDir); !os.IsNotExist(err) {
		t.Errorf("work dir left behind: %v", err)
	}
	if r.job.Boot == nil || r.job.Boot.Domain != "fake-web01" {
		t.Errorf("boot record %+v", r.job.Boot)
	}
}

// TestValidateDefaultLibvirt: no Target is libvirt, writing OUTPUT/NAME.xml as before.
func TestValidateDefaultLibvirt(t *testing.T) {
	if _, err := exec.LookPath("virt-xml-validate"); err != nil {
		t.Skip("virt-xml-validate not installed")
	}
	r := validateRunner(t, Options{}, machine.VM{Name: "source", NICs: []machine.NIC{{MAC: "00:50:56:01:02:03"}}})
	if err := r.validate(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(r.opt.OutputDir, "web01.xml")
	if r.job.Domain != want || r.job.Target != "libvirt" {
		t.Fatalf("domain %q target %q", r.job.Domain, r.job.Target)
	}
	b, err := os.ReadFile(want)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "<name>web01</name>") || !strings.Contains(string(b), `type="qemu"`) {
		t.Errorf("domain:\n%s", b)
	}
}
