package linux_test

import (
	"context"
	"encoding/json"
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
	"github.com/h2kvm/h2kvm/fixers/linux/conf"
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

// testGuests are the guests the fix tests run on: H2KVM_TEST_GUESTS (comma separated), or
// every recipe.
func testGuests() []string {
	if only := os.Getenv("H2KVM_TEST_GUESTS"); only != "" {
		return strings.Split(only, ",")
	}
	return guests.Names()
}

// TestFixGuests inspects, plans and fixes each VMware-style test guest in a qcow2 overlay with
// ONE appliance launch, checks that a second Apply changes nothing (and allocates nothing in
// the overlay) and that a fresh plan is empty, then boots the overlay on virtio-blk +
// virtio-net (user networking) under TCG, with OVMF for UEFI guests, and logs in over SSH.
// The unfixed chains failing the same boot is integration/bootcheck's
// TestNaiveConversionFails. The cached chains must stay byte-identical.
func TestFixGuests(t *testing.T) {
	for _, name := range testGuests() {
		t.Run(name, func(t *testing.T) { testFixGuest(t, buildGuest(t, name)) })
	}
}

func testFixGuest(t *testing.T, g guests.Guest) {
	want := g.Manifest.Facts
	before := chainHashes(t, g)
	disk := overlay(t, g, "fixed.qcow2")
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
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
	inspectTime := time.Since(start)
	t.Logf("inspect: %v %v", inspectTime.Round(time.Millisecond), f.Timings)
	for _, fd := range f.Findings {
		t.Logf("finding %s [%s]: %s", fd.ID, fd.Severity, fd.Message)
	}
	checkBrokenFacts(t, f, g.Manifest)

	start = time.Now()
	plan, err := linux.Plan(f, linux.PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	planTime := time.Since(start)
	for _, fx := range plan.Fixes {
		t.Logf("fix %s: %s %v", fx.ID, fx.Reason, fx.Files)
	}
	for _, w := range plan.Warnings {
		t.Logf("plan warning: %s", w)
	}
	grubFix := unstable(want.KernelRoot)
	for id, wanted := range map[string]bool{linux.FixFstab: true, linux.FixNetwork: true, linux.FixVMwareTools: true,
		linux.FixInitramfs: true, linux.FixGrubDefault: grubFix, linux.FixGrubRegenerate: grubFix, linux.FixGrubConsole: false} {
		if plan.Has(id) != wanted {
			t.Errorf("plan has %s: %v, want %v", id, plan.Has(id), wanted)
		}
	}
	if !slices.Equal(plan.Kernels, want.KernelVersions) {
		t.Errorf("plan kernels %v, want %v", plan.Kernels, want.KernelVersions)
	}

	start = time.Now()
	rep, err := linux.Apply(ctx, s.G(), plan)
	if err != nil {
		t.Fatalf("apply: %v\n%s", err, rep.Summary())
	}
	fixTime := time.Since(start)
	t.Logf("apply: %v %v\n%s", fixTime.Round(time.Millisecond), rep.Seconds, rep.Summary())
	changed := map[string]bool{}
	for _, c := range rep.Changes {
		changed[c.File] = true
		if c.Action == "modify" && c.Before == c.After {
			t.Errorf("change %s records identical before and after", c)
		}
	}
	for _, p := range expectedChanges(f, want, grubFix) {
		if !changed[p] {
			t.Errorf("apply did not change %s", p)
		}
	}
	written := topLayerBytes(t, disk)

	start = time.Now()
	rep2, err := linux.Apply(ctx, s.G(), plan)
	if err != nil {
		t.Fatalf("second apply: %v", err)
	}
	t.Logf("second apply: %v %v", time.Since(start).Round(time.Millisecond), rep2.Seconds)
	if !rep2.Empty() {
		t.Errorf("second apply changed things:\n%s", rep2.Summary())
	}
	if again := topLayerBytes(t, disk); again > written {
		t.Errorf("second apply allocated %d more bytes in the overlay (%d → %d)", again-written, written, again)
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
	written = topLayerBytes(t, disk)
	virtual := g.Manifest.VirtualSize
	t.Logf("numbers: guest=%s inspect=%.1fs plan=%.4fs fix=%.1fs overlay_written=%d virtual_size=%d written/virtual=%.4f allocated=%d",
		g.Manifest.Name, inspectTime.Seconds(), planTime.Seconds(), fixTime.Seconds(), written, virtual,
		float64(written)/float64(virtual), allocated(t, disk))

	bootFixed(t, g, disk)
	for p, h := range chainHashes(t, g) {
		if before[p] != h {
			t.Errorf("source link %s changed", p)
		}
	}
}

func unstable(spec string) bool {
	u, _ := conf.Unstable(spec)
	return u
}

// expectedChanges lists the files (and commands) Apply must report for a recipe.
func expectedChanges(f *linux.Facts, want guests.Facts, grubFix bool) []string {
	out := []string{"/etc/fstab", "dpkg --purge open-vm-tools"}
	if want.LinkFile != "" {
		out = append(out, want.LinkFile)
	} else if _, file, ok := strings.Cut(want.NetworkConfig, ":"); ok {
		out = append(out, file)
	}
	switch want.Initramfs {
	case "initramfs-tools":
		out = append(out, "/etc/initramfs-tools/modules")
	case "dracut":
		out = append(out, linux.DracutConfig)
		out = append(out, f.Initramfs.OmitFiles...)
	}
	for _, k := range want.KernelVersions {
		out = append(out, "/boot/initrd.img-"+k)
	}
	if grubFix {
		out = append(out, "/etc/default/grub", "/boot/grub/grub.cfg")
	}
	return out
}

// topLayerBytes counts the bytes the overlay itself holds (qemu-img map, depth 0), i.e. what
// fixing wrote; -U because the appliance may still have the image open.
func topLayerBytes(t *testing.T, disk string) int64 {
	t.Helper()
	var m []struct {
		Length  int64 `json:"length"`
		Depth   int   `json:"depth"`
		Present bool  `json:"present"`
	}
	if err := json.Unmarshal([]byte(run(t, "qemu-img", "map", "-U", "--output=json", disk)), &m); err != nil {
		t.Fatalf("qemu-img map %s: %v", disk, err)
	}
	var n int64
	for _, e := range m {
		if e.Depth == 0 && e.Present {
			n += e.Length
		}
	}
	return n
}

// tabEntry returns the fstab entry with spec, or nil.
func tabEntry(f *linux.Facts, spec string) *linux.TabEntry {
	for i, e := range f.Fstab {
		if e.Spec == spec {
			return &f.Fstab[i]
		}
	}
	return nil
}

// checkTab checks that an fstab entry exists and is unstable (with a UUID= replacement) exactly
// when its name is one that changes on KVM.
func checkTab(t *testing.T, f *linux.Facts, spec, what string) {
	t.Helper()
	e := tabEntry(f, spec)
	switch {
	case e == nil:
		t.Errorf("fstab has no %s entry %s: %+v", what, spec, f.Fstab)
	case e.Unstable != unstable(spec):
		t.Errorf("fstab %s entry %s: unstable=%v", what, spec, e.Unstable)
	case e.Unstable && !strings.HasPrefix(e.Stable, "UUID="):
		t.Errorf("fstab %s entry %s: stable replacement %q", what, spec, e.Stable)
	}
}

// checkBrokenFacts compares the facts with what the recipe planted.
func checkBrokenFacts(t *testing.T, f *linux.Facts, m guests.Manifest) {
	t.Helper()
	want := m.Facts
	if f.OS.Type != "linux" || f.OS.Distro != "debian" || f.OS.Root != want.ApplianceRoot || f.OS.Hostname != want.Hostname ||
		f.OS.PackageFormat != "deb" || f.OS.Arch != "x86_64" {
		t.Errorf("os facts %+v", f.OS)
	}
	if f.Firmware != string(m.Firmware) {
		t.Errorf("firmware %q, want %q", f.Firmware, m.Firmware)
	}
	checkTab(t, f, want.RootFstab, "root")
	if e := tabEntry(f, want.RootFstab); e != nil && e.Device != want.ApplianceRoot {
		t.Errorf("fstab root entry maps to %q, want %q", e.Device, want.ApplianceRoot)
	}
	if want.SwapFstab != "" {
		checkTab(t, f, want.SwapFstab, "swap")
	}
	if want.BootFstab != "" {
		checkTab(t, f, want.BootFstab, want.BootMount)
	}
	if f.RootLVM != (want.RootLVM != "") {
		t.Errorf("root on LVM: %v, recipe says %q", f.RootLVM, want.RootLVM)
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
	ir := f.Initramfs
	switch {
	case ir.Generator != want.Initramfs:
		t.Errorf("initramfs generator %q, want %q", ir.Generator, want.Initramfs)
	case ir.Generator == "initramfs-tools" && (ir.ModulesPolicy != "list" || !slices.Equal(ir.Modules, want.InitramfsModules)):
		t.Errorf("initramfs %+v", ir)
	case ir.Generator == "dracut":
		for _, m := range want.InitramfsModules {
			if !slices.Contains(ir.Modules, m) {
				t.Errorf("dracut add_drivers %v lack %s", ir.Modules, m)
			}
		}
		if ir.HostOnly != want.InitramfsHostOnly || len(ir.OmittedVirtio) == 0 || len(ir.OmitFiles) == 0 {
			t.Errorf("dracut facts %+v", ir)
		}
	}
	tool, file, _ := strings.Cut(want.NetworkConfig, ":")
	var iface *linux.Interface
	for i, it := range f.Network.Interfaces {
		if it.File == file {
			iface = &f.Network.Interfaces[i]
		}
	}
	switch {
	case iface == nil:
		t.Errorf("no interface configured by %s: %+v", file, f.Network)
	case iface.Method != "dhcp" || tool == "ifupdown" && iface.Name != want.Interface:
		t.Errorf("interface %+v", iface)
	case want.LinkFile == "" && iface.MAC != want.MAC:
		t.Errorf("interface %+v does not match the VMware MAC %s", iface, want.MAC)
	}
	if want.LinkFile != "" {
		var link *linux.LinkRule
		for i, l := range f.Network.Links {
			if l.File == want.LinkFile {
				link = &f.Network.Links[i]
			}
		}
		if link == nil || link.MAC != want.MAC || link.Name != want.Interface {
			t.Errorf("links %+v", f.Network.Links)
		}
	}
	if !f.Network.Udevd {
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
		if unstable(e.Root) {
			t.Errorf("fixed guest: %s line %d root=%s", e.File, e.Line+1, e.Root)
		}
	}
	if f.Boot.DisableLinuxUUID && !f.RootLVM {
		t.Error("fixed guest: GRUB_DISABLE_LINUX_UUID still true")
	}
	for _, k := range f.Kernels {
		for _, m := range linux.VirtioModules {
			if !k.InitramfsVirtio[m] {
				t.Errorf("fixed guest: initramfs of %s lacks %s (%s)", k.Version, m, k.InitramfsError)
			}
		}
	}
	if len(f.Initramfs.OmittedVirtio) > 0 {
		t.Errorf("fixed guest: dracut still omits %v", f.Initramfs.OmittedVirtio)
	}
	for _, i := range f.Network.Interfaces {
		if i.MAC != "" {
			t.Errorf("fixed guest: %s still matches MAC %s", i.File, i.MAC)
		}
	}
	if f.VMware.Present() {
		t.Errorf("fixed guest still has VMware tools: %+v", f.VMware)
	}
}

// bootFixed boots the fixed overlay on virtio under TCG (OVMF for UEFI guests), waits for the
// login prompt on the serial console and the SSH banner through the forwarded port, then logs
// in and checks that the guest is the top of the chain, its NIC kept its VMware name (when the
// recipe pinned one) and VMware's tools are gone.
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
	fw := bootcheck.BIOS
	if g.Manifest.Firmware == guests.UEFI {
		fw = bootcheck.UEFI
	}
	var inGuest string
	res, err := bootcheck.Boot(context.Background(), bootcheck.Options{
		Disk: disk, Format: "qcow2", Firmware: fw,
		Timeout:   480 * time.Second, // generous: the shared 2-core host may run several TCG guests at once
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
	t.Logf("boot: %s banner=%q\nin guest: %q", res.Summary(), res.Banner, inGuest)
	if !res.OK() {
		t.Fatalf("fixed guest did not boot and reach the network:\n%s\n%s", res.SerialTail, res.QEMUStderr)
	}
	if res.WhileUpErr != nil {
		t.Fatalf("ssh: %v", res.WhileUpErr)
	}
	if !strings.HasPrefix(inGuest, want.Marker+"\n") || want.Interface != "" && !strings.Contains(inGuest, "\n"+want.Interface+"\n") ||
		!strings.Contains(inGuest, "No such file") {
		t.Errorf("guest reports %q: want the snapshot marker, NIC %q, no vmtoolsd", inGuest, want.Interface)
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
