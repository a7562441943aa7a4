package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/h2kvm/h2kvm/pipeline/migrate"
)

// needTool skips when a tool is missing, unless H2KVM_REQUIRE_TOOLS is set (CI): then it fails.
func needTool(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("H2KVM_REQUIRE_TOOLS") != "" {
				t.Fatalf("%s is required (H2KVM_REQUIRE_TOOLS is set): %v", tool, err)
			}
			t.Skipf("%s not installed", tool)
		}
	}
}

// The data qemu-img map reports for a sparse VMDK equals what was written into it.
func TestMappedData(t *testing.T) {
	needTool(t, "qemu-img", "qemu-io")
	ctx := context.Background()
	p := filepath.Join(t.TempDir(), "d.vmdk")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "vmdk", "-o", "subformat=monolithicSparse", p, "64M").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if out, err := exec.Command("qemu-io", "-f", "vmdk", "-c", "write -P 0x11 1M 2M", "-c", "write -P 0x22 40M 512K", p).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	n, err := mappedData(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(2<<20 + 512<<10); n != want {
		t.Fatalf("mapped data %d, want %d", n, want)
	}
	info, err := qemuImgInfo(ctx, p)
	if err != nil || info.VirtualSize != 64<<20 {
		t.Fatalf("info %+v %v", info, err)
	}
	if _, err := sumData([]byte("not json")); err == nil {
		t.Fatal("sumData accepted garbage")
	}
}

// diskUse counts allocated blocks as du does, not apparent sizes.
func TestDiskUseMatchesDu(t *testing.T) {
	needTool(t, "du")
	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, "sparse"))
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt(bytes.Repeat([]byte{1}, 3<<20), 10<<20) // 3 MiB of data at 10 MiB: a hole first
	f.Close()
	os.MkdirAll(filepath.Join(dir, "sub"), 0o755)
	os.WriteFile(filepath.Join(dir, "sub", "small"), bytes.Repeat([]byte{2}, 100<<10), 0o644)
	out, err := exec.Command("du", "-s", "-B1", dir).Output()
	if err != nil {
		t.Fatal(err)
	}
	du, _ := strconv.ParseInt(strings.Fields(string(out))[0], 10, 64)
	// du also counts the directories' own blocks; diskUse counts files only.
	got := migrate.DiskUse(dir, filepath.Join(dir, "missing"))
	if got < 3<<20+100<<10 || got > du {
		t.Fatalf("diskUse %d; du %d; want between the data written and du", got, du)
	}
	if got >= 13<<20 {
		t.Fatalf("diskUse %d counts the hole", got)
	}
}

// The sampler keeps the peak of a folder that grows and then shrinks.
func TestSamplerPeak(t *testing.T) {
	dir := t.TempDir()
	s := startSampler(10*time.Millisecond, []string{dir}, []string{filepath.Join(dir, "none")})
	p := filepath.Join(dir, "f")
	os.WriteFile(p, bytes.Repeat([]byte{1}, 2<<20), 0o644)
	time.Sleep(100 * time.Millisecond)
	os.Remove(p)
	time.Sleep(50 * time.Millisecond)
	peaks, n := s.stop()
	if peaks[0] < 2<<20 || peaks[1] != 0 || n < 3 {
		t.Fatalf("peaks %v after %d samples", peaks, n)
	}
}

// A step past its timeout is killed with its whole process group, and says so.
func TestRunLoggedTimeout(t *testing.T) {
	needTool(t, "sh", "sleep")
	log := filepath.Join(t.TempDir(), "log")
	start := time.Now()
	_, err := runLogged(context.Background(), 300*time.Millisecond, log, nil, "sh", "-c", "sleep 30 & sleep 30; echo never")
	if err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("err %v", err)
	}
	if d := time.Since(start); d > 8*time.Second {
		t.Fatalf("took %v: the process group was not killed", d)
	}
	if _, err := runLogged(context.Background(), time.Minute, log, []string{"BM_X=42"}, "sh", "-c", "echo value $BM_X; echo oops >&2; exit 3"); err == nil {
		t.Fatal("exit 3 was not an error")
	}
	if got := lastLines(log, 2, "value", "oops"); len(got) != 2 || got[0] != "value 42" || got[1] != "oops" {
		t.Fatalf("log lines %q", got)
	}
}

// The admin's fix script is valid sh, and the MAC is substituted.
func TestNaiveFixScript(t *testing.T) {
	needTool(t, "sh")
	s := strings.ReplaceAll(naiveFixScript, "@MAC@", bootMAC)
	if strings.Contains(s, "@MAC@") || !strings.Contains(s, "MACAddress="+bootMAC) {
		t.Fatal("MAC not substituted")
	}
	p := filepath.Join(t.TempDir(), "fix.sh")
	os.WriteFile(p, []byte(s), 0o755)
	if out, err := exec.Command("sh", "-n", p).CombinedOutput(); err != nil {
		t.Fatalf("sh -n: %v: %s", err, out)
	}
}

func TestExtraMounts(t *testing.T) {
	fstab := `# /etc/fstab
/dev/disk/by-path/pci-0000:03:00.0-scsi-0:0:0:0-part2 / ext4 errors=remount-ro 0 1
/dev/disk/by-path/pci-0000:03:00.0-scsi-0:0:0:0-part1 /boot/efi vfat umask=0077 0 1
/dev/sda3 /boot ext4 defaults 0 2
/dev/sda4 none swap sw 0 0
UUID=1234 /srv ext4 defaults 0 2
proc /proc proc defaults 0 0
/dev/disk/by-path/pci-0000:03:00.0-scsi-0:0:0:0-partx /bad ext4 defaults 0 2
`
	got := extraMounts(fstab, "/dev/sda")
	want := [][2]string{{"UUID=1234", "/srv"}, {"/dev/sda3", "/boot"}, {"/dev/sda1", "/boot/efi"}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestParseTools(t *testing.T) {
	m, err := parseTools("h2kvm, v2v")
	if err != nil || !m["h2kvm"] || !m["v2v"] || m["naive"] {
		t.Fatalf("%v %v", m, err)
	}
	for _, bad := range []string{"", "h2kvm,qemu"} {
		if _, err := parseTools(bad); err == nil {
			t.Fatalf("%q accepted", bad)
		}
	}
}

func TestSelectGuestsNeverBuilds(t *testing.T) {
	cache := t.TempDir()
	var log bytes.Buffer
	g, err := selectGuests(context.Background(), "", cache, false, &log)
	if err != nil || len(g) != 0 {
		t.Fatalf("empty cache: %v %v", g, err)
	}
	if _, err := selectGuests(context.Background(), "debian-bios", cache, false, &log); err == nil || !strings.Contains(err.Error(), "not cached") {
		t.Fatalf("uncached guest: %v", err)
	}
	if _, err := selectGuests(context.Background(), "nope", cache, false, &log); err == nil {
		t.Fatal("unknown guest accepted")
	}
	if log.Len() != 0 {
		t.Fatalf("something was built: %s", log.String())
	}
}

// Ratios come from the measures; a failed peer gives n/a, never a number.
func TestRatiosAndTable(t *testing.T) {
	g := GuestResult{Guest: "g", Firmware: "bios", VirtualBytes: 1000, AllocatedBytes: 200, ChainFileBytes: 210,
		H2KVM: &H2KVMResult{OK: true, WallSeconds: 50, GuestSeconds: 40, HTTPBytes: 100, OverlayBytes: 10,
			PeakStateBytes: 20, PeakAllBytes: 220, StageSeconds: map[string]float64{"inspect": 10, "plan": 0, "fix": 30},
			Boot: &BootResult{Booted: true, Network: true, LoginSeconds: 30, SSHSeconds: 40}},
		Naive: &NaiveResult{OK: true, Seconds: 100, WithFailedSeconds: 130, HTTPBytes: 210, PeakDownloadBytes: 210, PeakAllBytes: 420,
			Steps: []Step{{Name: "download", OK: true, Seconds: 5}, {Name: "fix: virt-customize", Seconds: 30}, {Name: "fix: guestfish, mounted by hand", OK: true, Seconds: 80}},
			Boot:  &BootResult{Booted: true, LoginSeconds: 31, FailedOn: ""}},
		V2V: &V2VResult{Seconds: 60, Error: "virt-v2v: exit status 1: mount_stub"},
	}
	r := ratios(g)
	if f2(r.H2KVMOverNaive) != "0.50" || r.H2KVMOverV2V != nil || f3(r.H2KVMFetchedOverAllocated) != "0.500" ||
		f3(r.NaiveFetchedOverAllocated) != "1.050" || f3(r.H2KVMStagingExcl) != "0.020" || f3(r.NaiveStagingIncl) != "0.420" ||
		f3(r.OverlayOverVirtual) != "0.010" || f2(r.NaiveFixSeconds) != "80.00" {
		t.Fatalf("ratios %+v", r)
	}
	g.Ratios = r
	var b bytes.Buffer
	printGuest(&b, g)
	out := b.String()
	for _, want := range []string{"h2kvm/naive time 0.50", "h2kvm/virt-v2v time n/a", "FAILED after 60.0 s", "virt-v2v failed: virt-v2v: exit status 1: mount_stub",
		"130.0 s with the failed virt-customize", "virt-customize 30.0 s FAILED", "yes (40 s)", "no output"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}
