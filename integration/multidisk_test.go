package integration

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/h2kvm/h2kvm/pipeline/migrate"
)

// TestMigrateMultiDisk migrates a VM of two disks as one job: a .vmx naming the debian-bios chain
// as scsi0:0 and a data disk (a monolithicSparse VMDK holding an ext4 filesystem with a known
// file) as scsi0:1. Both disks are exported, inspected and fixed in one appliance (sda, sdb),
// converted to NAME-disk0.qcow2 and NAME-disk1.qcow2, named in order in the domain as virtio
// disks, and the guest boots with both. The data disk comes out byte for byte as it went in.
// It is also the test of a VM folder: the .vmx names the chain's snapshot delta, and its MAC,
// memSize and numvcpus must be in the domain.
func TestMigrateMultiDisk(t *testing.T) {
	needIntegration(t)
	needTool(t, "virsh", "virt-xml-validate", "qemu-img", "guestfish")
	g := migrateGuest(t)
	dir := t.TempDir()
	// The guest's files go into the VM folder as hard links (a copy across file systems):
	// symbolic links leading out of the folder are refused, as a crafted folder's would be.
	for _, f := range g.Chain {
		dst := filepath.Join(dir, filepath.Base(f))
		if err := os.Link(f, dst); err != nil {
			runCmd(t, "", "cp", "--sparse=always", f, dst)
		}
	}
	const marker = "h2kvm multi-disk data marker\n"
	data := filepath.Join(dir, "db01_1.vmdk")
	runCmd(t, "", "qemu-img", "create", "-q", "-f", "vmdk", "-o", "subformat=monolithicSparse", data, "64M")
	guestfishRun(t, strings.Join([]string{
		"run", "part-disk /dev/sda mbr", "mkfs ext4 /dev/sda1 label:h2kvm-data", "mount /dev/sda1 /",
		"mkdir /srv", `write /srv/marker.txt "` + strings.TrimSuffix(marker, "\n") + `\n"`, "umount-all", "",
	}, "\n"), "--format=vmdk", "-a", data)
	dataSum := fileSums(t, data)
	before := fileSums(t, g.Chain...)

	vmx := filepath.Join(dir, "db01.vmx")
	writeFile(t, vmx, strings.Join([]string{
		`.encoding = "UTF-8"`, `displayName = "db01"`, `memSize = "1536"`, `numvcpus = "2"`,
		`scsi0.present = "TRUE"`, `scsi0.virtualDev = "pvscsi"`,
		`scsi0:0.present = "TRUE"`, `scsi0:0.deviceType = "scsi-hardDisk"`,
		`scsi0:0.fileName = "` + filepath.Base(g.Top) + `"`,
		`scsi0:1.present = "TRUE"`, `scsi0:1.deviceType = "scsi-hardDisk"`,
		`scsi0:1.fileName = "` + filepath.Base(data) + `"`,
		`ethernet0.present = "TRUE"`, `ethernet0.virtualDev = "vmxnet3"`,
		`ethernet0.addressType = "static"`, `ethernet0.address = "00:50:56:a1:b2:01"`,
	}, "\n")+"\n")

	out := filepath.Join(t.TempDir(), "out")
	m := runMigrate(t, migrateEnv(), migrateTimeout, vmx, "--output", out, "--boot-test")
	if m.code != 0 {
		t.Fatalf("migrate exited %d after %v\n%s", m.code, m.elapsed.Round(time.Second), tail(m.stderr.String(), 6000))
	}
	j := readReport(t, out)
	for _, st := range migrate.Stages {
		if r := j.Stages[st]; r.Status != "done" {
			t.Errorf("stage %s: %+v, want done", st, r)
		}
	}
	if j.Name != "db01" {
		t.Fatalf("job name %q, want db01", j.Name)
	}
	disk0, disk1 := filepath.Join(out, "db01-disk0.qcow2"), filepath.Join(out, "db01-disk1.qcow2")
	if len(j.Outputs) != 2 || j.Outputs[0] != disk0 || j.Outputs[1] != disk1 {
		t.Fatalf("outputs %v, want [%s %s]", j.Outputs, disk0, disk1)
	}
	if names := outputNames(t, out); strings.Join(names, " ") != "db01-disk0.qcow2 db01-disk1.qcow2 db01.xml report.json report.md" {
		t.Errorf("output folder holds %v", names)
	}
	// The OS disk was fixed; the data disk is what it was.
	checkFixed(t, j)
	for _, c := range j.Fixes.Changes {
		if strings.HasPrefix(c.File, "/srv") {
			t.Errorf("a fixer changed %s", c.File)
		}
	}
	sameContent(t, disk1, data)
	if _, virtual, _ := qemuImgInfo(t, disk0); virtual != g.Manifest.VirtualSize {
		t.Errorf("%s: virtual size %d, want %d", disk0, virtual, g.Manifest.VirtualSize)
	}
	// The data disk's file, read from the output by libguestfs.
	// (guestfish ends what it prints with a newline.)
	if got := guestfishRun(t, "", "--ro", "--format=qcow2", "-a", disk1, "-m", "/dev/sda1", "cat", "/srv/marker.txt"); got != marker+"\n" {
		t.Errorf("marker on the converted data disk: %q, want %q", got, marker+"\n")
	}

	// Report per disk, in order.
	if len(j.Disks) != 2 {
		t.Fatalf("report lists %d disks: %+v", len(j.Disks), j.Disks)
	}
	for i, want := range []struct{ unit, target, output, source string }{
		{"0:0", "vda", disk0, filepath.Base(g.Top)}, {"0:1", "vdb", disk1, filepath.Base(data)},
	} {
		d := j.Disks[i]
		if d.Index != i || d.Unit != want.unit || d.Target != want.target || d.Output != want.output ||
			filepath.Base(d.Source) != want.source || d.VirtualBytes <= 0 || d.OutputBytes <= 0 {
			t.Errorf("disk %d in the report: %+v", i, d)
		}
	}
	if j.Disks[1].VirtualBytes != 64<<20 || j.VirtualBytes != j.Disks[0].VirtualBytes+j.Disks[1].VirtualBytes {
		t.Errorf("virtual sizes: disks %d + %d, job %d", j.Disks[0].VirtualBytes, j.Disks[1].VirtualBytes, j.VirtualBytes)
	}
	md, _ := os.ReadFile(filepath.Join(out, "report.md"))
	if !strings.Contains(string(md), "## Disks") || !strings.Contains(string(md), "db01-disk1.qcow2") {
		t.Errorf("report.md has no per-disk table naming db01-disk1.qcow2")
	}

	// Both disks in the domain, in order, virtio, the OS disk first to boot.
	x, err := os.ReadFile(filepath.Join(out, "db01.xml"))
	if err != nil {
		t.Fatal(err)
	}
	xs := string(x)
	i0, i1 := strings.Index(xs, `<source file="`+disk0+`">`), strings.Index(xs, `<source file="`+disk1+`">`)
	if i0 < 0 || i1 < 0 || i0 > i1 {
		t.Errorf("domain XML does not name %s then %s:\n%s", disk0, disk1, xs)
	}
	if strings.Count(xs, `bus="virtio"`) != 2 || !strings.Contains(xs, `<target dev="vda" bus="virtio">`) || !strings.Contains(xs, `<target dev="vdb" bus="virtio">`) {
		t.Errorf("domain XML: want vda and vdb on virtio:\n%s", xs)
	}
	checkBooted(t, out, "db01", "00:50:56:a1:b2:01", "1536", "2") // the VMX's MAC and sizing
	if j.Boot == nil || !j.Boot.Evidence.OK() {
		t.Errorf("boot evidence: %+v", j.Boot)
	}
	if fileSums(t, g.Chain...) != before || fileSums(t, data) != dataSum {
		t.Fatal("a source VMDK file changed")
	}
	t.Logf("two disks: migrate with boot test %v (%s); disk0 %s virtual / %s on disk, disk1 %s / %s",
		m.elapsed.Round(time.Second), stageTimes(j), mib(j.Disks[0].VirtualBytes), mib(j.Disks[0].OutputBytes),
		mib(j.Disks[1].VirtualBytes), mib(j.Disks[1].OutputBytes))
}

// guestfishRun runs guestfish with args (and script on its standard input, if not empty) in the
// migrate processes' environment under TCG and returns its standard output.
func guestfishRun(t *testing.T, script string, args ...string) string {
	t.Helper()
	cmd := exec.Command("guestfish", args...)
	// KVM is unusable on the project's machines: a guestfish appliance would hang in it.
	cmd.Env = migrateEnv("LIBGUESTFS_BACKEND_SETTINGS=force_tcg")
	if script != "" {
		cmd.Stdin = strings.NewReader(script)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("guestfish %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}
