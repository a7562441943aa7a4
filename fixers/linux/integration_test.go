package linux_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/h2kvm/h2kvm/fixers/gfs"
	"github.com/h2kvm/h2kvm/fixers/linux"
	"github.com/h2kvm/h2kvm/integration/bootcheck"
	"github.com/h2kvm/h2kvm/tools/guestbuild/guests"
)

// buildGuest returns the cached test guest, waiting for (never duplicating) a build in
// progress: guests.Build serialises builders with a lock file.
func buildGuest(t *testing.T, name string) guests.Guest {
	t.Helper()
	integration(t)
	needTools(t, "qemu-img", "qemu-system-x86_64", "du")
	start := time.Now()
	g, err := guests.Build(context.Background(), name, "")
	if err != nil {
		if errors.Is(err, guests.ErrToolMissing) && os.Getenv("H2KVM_REQUIRE_TOOLS") == "" {
			t.Skip(err)
		}
		t.Fatalf("build %s: %v", name, err)
	}
	t.Logf("guest %s: %s (ready in %v)", name, g.Dir, time.Since(start).Round(time.Second))
	return g
}

// overlay creates a qcow2 overlay over the chain's top link in a temporary folder.
func overlay(t *testing.T, g guests.Guest, name string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	run(t, "qemu-img", "create", "-q", "-f", "qcow2", "-b", g.Top, "-F", "vmdk", p)
	return p
}

func chainHashes(t *testing.T, g guests.Guest) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, p := range g.Chain {
		m[p] = sha256File(t, p)
	}
	return m
}

// TestFixDebianBIOS inspects, plans and fixes the VMware-style Debian guest in a qcow2 overlay
// with ONE appliance launch, checks that a second Apply and a fresh plan find nothing to do,
// then boots the overlay on virtio-blk + virtio-net under TCG and logs in over SSH. The
// unfixed chain failing the same boot is integration/bootcheck's
// TestDebianBIOSNaiveConversionFails. The cached chain must stay byte-identical.
func TestFixDebianBIOS(t *testing.T) {
	g := buildGuest(t, "debian-bios")
	want := g.Manifest.Facts
	before := chainHashes(t, g)
	disk := overlay(t, g, "fixed.qcow2")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()

	start := time.Now()
	s, err := gfs.Open(ctx, gfs.Options{ForceTCG: true, Identifier: "fixers-linux-test"}, gfs.File(disk, "qcow2", false))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	t.Logf("appliance launch: %v", time.Since(start).Round(time.Millisecond))

	start = time.Now()
	f, err := linux.Inspect(ctx, s.G())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("inspect: %v %v", time.Since(start).Round(time.Millisecond), f.Timings)
	for _, fd := range f.Findings {
		t.Logf("finding %s [%s]: %s", fd.ID, fd.Severity, fd.Message)
	}
	checkBrokenFacts(t, f, want)

	start = time.Now()
	plan, err := linux.Plan(f, linux.PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("plan: %v", time.Since(start))
	for _, fx := range plan.Fixes {
		t.Logf("fix %s: %s %v", fx.ID, fx.Reason, fx.Files)
	}
	for _, id := range []string{linux.FixFstab, linux.FixNetwork, linux.FixVMwareTools, linux.FixInitramfs,
		linux.FixGrubDefault, linux.FixGrubRegenerate} {
		if !plan.Has(id) {
			t.Errorf("plan lacks %s", id)
		}
	}
	if plan.Has(linux.FixGrubConsole) {
		t.Errorf("plan adds a serial console the guest already has (%q)", f.Boot.CmdlineLinux)
	}
	if !slices.Equal(plan.Kernels, want.KernelVersions) {
		t.Errorf("plan kernels %v, want %v", plan.Kernels, want.KernelVersions)
	}

	start = time.Now()
	rep, err := linux.Apply(ctx, s.G(), plan)
	if err != nil {
		t.Fatalf("apply: %v\n%s", err, rep.Summary())
	}
	t.Logf("apply: %v %v\n%s", time.Since(start).Round(time.Millisecond), rep.Seconds, rep.Summary())
	changed := map[string]bool{}
	for _, c := range rep.Changes {
		changed[c.File] = true
		if c.Action == "modify" && c.Before == c.After {
			t.Errorf("change %s records identical before and after", c)
		}
	}
	for _, p := range []string{"/etc/fstab", want.LinkFile, "/etc/initramfs-tools/modules", "/etc/default/grub",
		"/boot/grub/grub.cfg", "/boot/initrd.img-" + want.KernelVersions[0], "dpkg --purge open-vm-tools"} {
		if !changed[p] {
			t.Errorf("apply did not change %s", p)
		}
	}

	start = time.Now()
	rep2, err := linux.Apply(ctx, s.G(), plan)
	if err != nil {
		t.Fatalf("second apply: %v", err)
	}
	t.Logf("second apply: %v %v", time.Since(start).Round(time.Millisecond), rep2.Seconds)
	if !rep2.Empty() {
		t.Errorf("second apply changed things:\n%s", rep2.Summary())
	}

	start = time.Now()
	f2, err := linux.Inspect(ctx, s.G())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("re-inspect: %v %v", time.Since(start).Round(time.Millisecond), f2.Timings)
	checkFixedFacts(t, f2)
	plan2, err := linux.Plan(f2, linux.PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan2.Fixes) != 0 {
		t.Errorf("plan of the fixed guest is not empty: %+v", plan2.Fixes)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(disk)
	t.Logf("overlay after fix: file size %d, allocated %d bytes", st.Size(), allocated(t, disk))

	bootFixed(t, g, disk)
	for p, h := range chainHashes(t, g) {
		if before[p] != h {
			t.Errorf("source link %s changed", p)
		}
	}
}

// checkBrokenFacts compares the facts with what the recipe planted.
func checkBrokenFacts(t *testing.T, f *linux.Facts, want guests.Facts) {
	t.Helper()
	if f.OS.Type != "linux" || f.OS.Distro != "debian" || f.OS.Root != want.ApplianceRoot || f.OS.Hostname != want.Hostname ||
		f.OS.PackageFormat != "deb" || f.OS.Arch != "x86_64" {
		t.Errorf("os facts %+v", f.OS)
	}
	if f.Firmware != "bios" {
		t.Errorf("firmware %q", f.Firmware)
	}
	var root, swap *linux.TabEntry
	for i, e := range f.Fstab {
		switch e.Spec {
		case want.RootFstab:
			root = &f.Fstab[i]
		case want.SwapFstab:
			swap = &f.Fstab[i]
		}
	}
	if root == nil || !root.Unstable || root.Device != want.ApplianceRoot || !strings.HasPrefix(root.Stable, "UUID=") {
		t.Errorf("fstab root entry %+v", root)
	}
	if swap == nil || !swap.Unstable || !strings.HasPrefix(swap.Stable, "UUID=") {
		t.Errorf("fstab swap entry %+v", swap)
	}
	if !f.Boot.DisableLinuxUUID || f.Boot.Kind != "grub2" || len(f.Boot.Entries) == 0 {
		t.Errorf("boot facts %+v", f.Boot)
	}
	for _, e := range f.Boot.Entries {
		if e.Root != want.KernelRoot {
			t.Errorf("boot entry root=%q, want %q", e.Root, want.KernelRoot)
		}
	}
	var versions []string
	for _, k := range f.Kernels {
		versions = append(versions, k.Version)
		for _, m := range linux.VirtioModules {
			if k.Virtio[m] != "module" {
				t.Errorf("kernel %s: %s is %q, want module", k.Version, m, k.Virtio[m])
			}
			if k.InitramfsVirtio == nil || k.InitramfsVirtio[m] {
				t.Errorf("kernel %s: initramfs virtio facts %v (%s), want all false", k.Version, k.InitramfsVirtio, k.InitramfsError)
			}
		}
	}
	if !slices.Equal(versions, want.KernelVersions) {
		t.Errorf("kernels %v, want %v", versions, want.KernelVersions)
	}
	if f.Initramfs.Generator != want.Initramfs || f.Initramfs.ModulesPolicy != "list" || !slices.Equal(f.Initramfs.Modules, want.InitramfsModules) {
		t.Errorf("initramfs %+v", f.Initramfs)
	}
	var link *linux.LinkRule
	for i, l := range f.Network.Links {
		if l.File == want.LinkFile {
			link = &f.Network.Links[i]
		}
	}
	if link == nil || link.MAC != want.MAC || link.Name != want.Interface {
		t.Errorf("links %+v", f.Network.Links)
	}
	ok := false
	for _, i := range f.Network.Interfaces {
		ok = ok || i.Name == want.Interface && i.Backend == "ifupdown" && i.Method == "dhcp"
	}
	if !ok || !f.Network.Udevd {
		t.Errorf("network %+v", f.Network)
	}
	if !slices.Contains(f.VMware.Packages, "open-vm-tools") {
		t.Errorf("vmware tools %+v", f.VMware)
	}
}

func checkFixedFacts(t *testing.T, f *linux.Facts) {
	t.Helper()
	for _, e := range append(f.Fstab, f.Crypttab...) {
		if e.Unstable {
			t.Errorf("fixed guest: %s line %d still unstable: %s", e.File, e.Line+1, e.Spec)
		}
	}
	for _, e := range f.Boot.Entries {
		if !strings.HasPrefix(e.Root, "UUID=") {
			t.Errorf("fixed guest: %s line %d root=%s", e.File, e.Line+1, e.Root)
		}
	}
	if f.Boot.DisableLinuxUUID {
		t.Error("fixed guest: GRUB_DISABLE_LINUX_UUID still true")
	}
	for _, k := range f.Kernels {
		for _, m := range linux.VirtioModules {
			if !k.InitramfsVirtio[m] {
				t.Errorf("fixed guest: initramfs of %s lacks %s (%s)", k.Version, m, k.InitramfsError)
			}
		}
	}
	if f.VMware.Present() {
		t.Errorf("fixed guest still has VMware tools: %+v", f.VMware)
	}
}

// bootFixed boots the fixed overlay on virtio under TCG and checks, over SSH, that the guest is
// the top of the chain and its NIC kept its VMware name.
func bootFixed(t *testing.T, g guests.Guest, disk string) {
	t.Helper()
	key, err := os.ReadFile(g.SSHKey)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	want := g.Manifest.Facts
	var inGuest string
	res, err := bootcheck.Boot(context.Background(), bootcheck.Options{
		Disk: disk, Format: "qcow2", Timeout: 420 * time.Second, // generous: the shared 2-core host may run several TCG guests at once
		SerialLog: filepath.Join(t.TempDir(), "serial.log"),
		WhileUp: func(ctx context.Context, addr string) error {
			out, err := sshRun(addr, signer, "cat "+want.MarkerPath+"; ls /sys/class/net; ls /usr/bin/vmtoolsd 2>&1 || true")
			inGuest = out
			return err
		},
	})
	if err != nil {
		t.Fatalf("boot: %v", err)
	}
	t.Logf("boot: %s\nin guest: %q", res.Summary(), inGuest)
	if !res.OK() {
		t.Fatalf("fixed guest did not boot and reach the network:\n%s\n%s", res.SerialTail, res.QEMUStderr)
	}
	if res.WhileUpErr != nil {
		t.Fatalf("ssh: %v", res.WhileUpErr)
	}
	if !strings.HasPrefix(inGuest, want.Marker+"\n") || !strings.Contains(inGuest, want.Interface+"\n") ||
		!strings.Contains(inGuest, "No such file") {
		t.Errorf("guest reports %q: want the snapshot marker, NIC %s, no vmtoolsd", inGuest, want.Interface)
	}
}

// sshRun runs one command as root, retrying while sshd starts accepting logins.
func sshRun(addr string, signer ssh.Signer, command string) (string, error) {
	cfg := &ssh.ClientConfig{
		User:            "root",
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), // a throw-away test guest
		Timeout:         20 * time.Second,
	}
	var err error
	for i := 0; i < 5; i++ {
		var c *ssh.Client
		if c, err = ssh.Dial("tcp", addr, cfg); err == nil {
			defer c.Close()
			s, err := c.NewSession()
			if err != nil {
				return "", err
			}
			defer s.Close()
			out, err := s.CombinedOutput(command)
			return string(out), err
		}
		time.Sleep(3 * time.Second)
	}
	return "", err
}

// TestRefuseUnbootable deletes the virtio drivers from a scratch overlay of the guest, then
// checks that Plan refuses it and that inspecting and planning wrote nothing to the disk.
func TestRefuseUnbootable(t *testing.T) {
	g := buildGuest(t, "debian-bios")
	disk := overlay(t, g, "novirtio.qcow2")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	s, err := gfs.Open(ctx, gfs.Options{ForceTCG: true, Identifier: "fixers-linux-refuse"}, gfs.File(disk, "qcow2", false))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	gg := s.G()
	// Scratch setup: remove the virtio drivers (modules.dep is left stale on purpose).
	if err := gg.Mount(g.Manifest.Facts.ApplianceRoot, "/"); err != nil {
		t.Fatal(err)
	}
	removed := 0
	for _, pat := range []string{"/lib/modules/*/kernel/drivers/virtio/virtio_pci*.ko*", "/lib/modules/*/kernel/drivers/block/virtio_blk.ko*",
		"/lib/modules/*/kernel/drivers/scsi/virtio_scsi.ko*"} {
		m, err := gg.Glob_expand(pat, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range m {
			if err := gg.Rm(p); err != nil {
				t.Fatal(err)
			}
			removed++
		}
	}
	if removed < 3 {
		t.Fatalf("removed only %d virtio modules", removed)
	}
	if err := gg.Umount_all(); err != nil {
		t.Fatal(err)
	}
	if err := gg.Sync(); err != nil {
		t.Fatal(err)
	}
	hash := sha256File(t, disk)

	f, err := linux.Inspect(ctx, gg)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := linux.Plan(f, linux.PlanOptions{})
	t.Logf("plan: %v", err)
	if !errors.Is(err, linux.ErrNotBootable) || plan != nil {
		t.Fatalf("Plan = %v, %v; want ErrNotBootable", plan, err)
	}
	if !strings.Contains(err.Error(), "virtio_blk") {
		t.Errorf("refusal does not say what is missing: %v", err)
	}
	if err := gg.Sync(); err != nil {
		t.Fatal(err)
	}
	if h := sha256File(t, disk); h != hash {
		t.Error("inspecting and planning a refused guest wrote to its disk")
	}
}
