package linux

import (
	"fmt"
	"strings"
	"time"

	"github.com/h2kvm/h2kvm/fixers"
	"github.com/h2kvm/h2kvm/fixers/linux/conf"
)

// vmwareTools removes VMware's tools with the guest's package manager, then removes any unit
// links that are left (a failed removal, a tarball install).
func (a *applier) vmwareTools() error {
	if pkgs := a.installedPackages(a.f.VMware.Packages); len(pkgs) > 0 {
		var argv []string
		switch a.f.OS.PackageFormat {
		case "deb":
			argv = append([]string{"dpkg", "--purge"}, pkgs...)
		case "rpm":
			argv = append([]string{"rpm", "-e"}, pkgs...)
		}
		if argv == nil {
			a.r.Warnf("%s: cannot remove %s with package format %q; disabling units only", a.fix, strings.Join(pkgs, ", "), a.f.OS.PackageFormat)
		} else if out, secs, err := a.timedRun(argv...); err != nil {
			a.r.Warnf("%s: %v; disabling units only", a.fix, err)
		} else {
			a.r.Add(fixers.Change{Fix: a.fix, File: strings.Join(argv, " "), Action: fixers.ActionRun,
				Before: "installed: " + strings.Join(pkgs, " "), After: tail(out, 4000), Seconds: secs})
		}
	}
	for _, u := range a.f.VMware.Units {
		if err := a.remove(u); err != nil {
			return err
		}
	}
	return nil
}

// installedPackages returns those of names the guest's package database lists as installed.
func (a *applier) installedPackages(names []string) []string {
	if len(names) == 0 {
		return nil
	}
	switch a.f.OS.PackageFormat {
	case "deb":
		// Read the status file rather than run dpkg-query: a guest process costs seconds under TCG.
		status, _, _ := a.x.readFile("/var/lib/dpkg/status")
		return conf.DpkgInstalled(status, names)
	case "rpm":
		out, _ := a.x.run(append([]string{"rpm", "-q", "--qf", conf.RpmQueryFormat}, names...)...)
		return conf.RpmInstalled(out, names)
	}
	return names
}

// initramfs adds the virtio drivers to the generator's configuration and rebuilds every
// bootable kernel's initramfs that lacks them (all of them when the configuration changed).
func (a *applier) initramfs() error {
	ir := a.f.Initramfs
	mods := a.p.initramfsModules()
	n0 := len(a.r.Changes)
	const why = "h2kvm: virtio drivers for KVM"
	var err error
	switch ir.Generator {
	case "initramfs-tools":
		if a.x.isFile(ir.Config) {
			err = a.edit(ir.Config, func(old string) (string, bool) { return conf.AddModuleLines(old, mods, why) })
		} else {
			text, _ := conf.AddModuleLines("", mods, why)
			err = a.write(ir.Config, text, 0o644)
		}
	case "dracut":
		drop := map[string]bool{}
		for _, m := range VirtioModules {
			drop[m] = true
		}
		for _, file := range ir.OmitFiles {
			if err = a.edit(file, func(old string) (string, bool) { return conf.DracutUnomit(old, drop, "h2kvm: virtio needed on KVM") }); err != nil {
				return err
			}
		}
		drivers, modules := a.p.dracutWants()
		err = a.write(ir.Config, conf.DracutAddDrivers(drivers, modules, why), 0o644)
	case "mkinitcpio":
		err = a.edit(ir.Config, func(old string) (string, bool) { return conf.AddMkinitcpioModules(old, mods) })
	default:
		return fmt.Errorf("no initramfs generator: %w", ErrUnsupported)
	}
	if err != nil {
		return err
	}
	if s := a.f.stableFor(ir.Resume); s != "" && ir.ResumeFile != "" {
		if err := a.edit(ir.ResumeFile, func(old string) (string, bool) { return conf.SetShellVar(old, "RESUME", s) }); err != nil {
			return err
		}
	}
	configChanged := len(a.r.Changes) > n0
	doneAll := false
	for _, k := range a.f.Kernels {
		if !k.HasDisk() {
			continue
		}
		img := k.Initramfs
		if img == "" || !a.x.isFile(img) {
			img = ""
		}
		if !configChanged && img != "" && a.initramfsComplete(k, img) {
			continue
		}
		if doneAll {
			continue
		}
		before := a.describe(img)
		var argv []string
		switch ir.Generator {
		case "initramfs-tools":
			if img == "" {
				argv = []string{"update-initramfs", "-c", "-k", k.Version}
				img = "/boot/initrd.img-" + k.Version
			} else {
				argv = []string{"update-initramfs", "-u", "-k", k.Version}
			}
		case "dracut":
			if img == "" {
				img = "/boot/initramfs-" + k.Version + ".img"
				if a.f.OS.PackageFormat == "deb" {
					img = "/boot/initrd.img-" + k.Version
				}
			}
			argv = []string{"dracut", "-f", "--kver", k.Version, img}
		case "mkinitcpio":
			argv = []string{"mkinitcpio", "-P"}
			doneAll = true
		}
		out, secs, err := a.timedRun(argv...)
		if err != nil {
			return fmt.Errorf("%w\n%s", err, tail(out, 2000))
		}
		c := fixers.Change{Fix: a.fix, File: img, Action: fixers.ActionRegenerate, Before: before,
			After: a.describe(img) + "\n$ " + strings.Join(argv, " ") + "\n" + tail(out, 2000), Seconds: secs}
		a.r.Add(c)
		if before == "" {
			a.grubInputsChanged = true
		}
		if img != "" && !doneAll && !a.initramfsComplete(k, img) {
			return fmt.Errorf("%s still lacks virtio drivers after %s: %w", img, strings.Join(argv, " "), ErrGuestCommand)
		}
	}
	return nil
}

// initramfsComplete lists an image and reports whether it holds every virtio driver the kernel
// has as a module.
func (a *applier) initramfsComplete(k Kernel, img string) bool {
	present, err := listInitramfs(a.x, a.f.Initramfs.Generator, img)
	if err != nil {
		return false
	}
	for _, m := range VirtioModules {
		if k.Virtio[m] == "module" && !present[m] {
			return false
		}
	}
	return true
}

// describe summarises a binary file for a report: size and SHA-256, or "" when it is missing.
func (a *applier) describe(p string) string {
	if p == "" || !a.x.isFile(p) {
		return ""
	}
	size, _ := a.x.g.Filesize(p)
	sum, _ := a.x.g.Checksum("sha256", p)
	return fmt.Sprintf("size=%d sha256=%s", size, sum)
}

// deviceRepl maps the unstable root=/resume= values found in s to stable names.
func (a *applier) deviceRepl(s string) map[string]string {
	repl := map[string]string{}
	for _, k := range []string{"root", "resume"} {
		for _, v := range conf.CmdlineValues(s, k) {
			if st := a.f.stableFor(v); st != "" {
				repl[v] = st
			}
		}
	}
	return repl
}

// rewriteCmdlineVar replaces unstable root=/resume= values in a GRUB_CMDLINE_* variable.
func (a *applier) rewriteCmdlineVar(text, key string) (string, bool) {
	v, ok := conf.ShellVar(text, key)
	if !ok {
		return text, false
	}
	repl := a.deviceRepl(v)
	nv, ch1 := conf.CmdlineReplaceValues(v, "root", repl)
	nv, ch2 := conf.CmdlineReplaceValues(nv, "resume", repl)
	if !ch1 && !ch2 {
		return text, false
	}
	return conf.SetShellVar(text, key, nv)
}

// grubDefault lets grub-mkconfig use UUIDs again and replaces unstable device names in the
// default command lines, in /etc/default/grub and /etc/default/grub.d/*.cfg.
func (a *applier) grubDefault() error {
	files := append([]string{"/etc/default/grub"}, a.x.glob("/etc/default/grub.d/*.cfg")...)
	for _, file := range files {
		n0 := len(a.r.Changes)
		err := a.edit(file, func(old string) (string, bool) {
			t, c1 := conf.CommentOutShellVar(old, "GRUB_DISABLE_LINUX_UUID", conf.IsTrue, "h2kvm: root by UUID for KVM")
			t, c2 := a.rewriteCmdlineVar(t, "GRUB_CMDLINE_LINUX")
			t, c3 := a.rewriteCmdlineVar(t, "GRUB_CMDLINE_LINUX_DEFAULT")
			return t, c1 || c2 || c3
		})
		if err != nil {
			return err
		}
		if len(a.r.Changes) > n0 {
			a.grubInputsChanged = true
		}
	}
	return nil
}

// grubConsole adds a serial console to GRUB_CMDLINE_LINUX.
func (a *applier) grubConsole() error {
	file := a.f.Boot.DefaultFile
	n0 := len(a.r.Changes)
	err := a.edit(file, func(old string) (string, bool) {
		vars := conf.ShellVars(old)
		if conf.HasSerialConsole(vars["GRUB_CMDLINE_LINUX"] + " " + vars["GRUB_CMDLINE_LINUX_DEFAULT"]) {
			return old, false
		}
		nv, _ := conf.EnsureSerialConsole(vars["GRUB_CMDLINE_LINUX"])
		return conf.SetShellVar(old, "GRUB_CMDLINE_LINUX", nv)
	})
	if len(a.r.Changes) > n0 {
		a.grubInputsChanged = true
	}
	return err
}

// rewriteKernelLines replaces unstable root=/resume= values on the kernel lines of a grub.cfg
// or the options lines of a BLS entry.
func (a *applier) rewriteKernelLines(text string) (string, bool) {
	lines := strings.Split(text, "\n")
	changed := false
	kls := append(conf.GrubKernelLines(text), conf.BLSOptions(text)...)
	for _, kl := range kls {
		l := lines[kl.Line]
		repl := a.deviceRepl(l)
		l, c1 := conf.CmdlineReplaceValues(l, "root", repl)
		l, c2 := conf.CmdlineReplaceValues(l, "resume", repl)
		if c1 || c2 {
			lines[kl.Line] = l
			changed = true
		}
	}
	return strings.Join(lines, "\n"), changed
}

// bootEntries edits kernel command lines in place (BLS entries; grub.cfg without grub-mkconfig).
func (a *applier) bootEntries(files []string) error {
	for _, file := range files {
		if err := a.edit(file, a.rewriteKernelLines); err != nil {
			return err
		}
	}
	return nil
}

// grubNeedsRebuild reports whether a grub.cfg still passes unstable names or, when a serial
// console is wanted and configured, lacks it.
func (a *applier) grubNeedsRebuild() bool {
	wantConsole := false
	if !a.p.Options.NoSerialConsole && a.f.Boot.DefaultFile != "" {
		if t, found, _ := a.x.readFile(a.f.Boot.DefaultFile); found {
			v := conf.ShellVars(t)
			wantConsole = conf.HasSerialConsole(v["GRUB_CMDLINE_LINUX"] + " " + v["GRUB_CMDLINE_LINUX_DEFAULT"])
		}
	}
	for _, c := range a.f.Boot.Configs {
		t, found, _ := a.x.readFile(c)
		if !found {
			return true
		}
		if _, ch := a.rewriteKernelLines(t); ch {
			return true
		}
		for _, kl := range conf.GrubKernelLines(t) {
			if wantConsole && !conf.HasSerialConsole(kl.Args) {
				return true
			}
		}
	}
	return len(a.f.Boot.Configs) == 0
}

// grubRegenerate rebuilds grub.cfg with the guest's own tool when its inputs changed or it is
// still wrong, and records each config file's change.
func (a *applier) grubRegenerate() error {
	b := a.f.Boot
	if !a.grubInputsChanged && !a.grubNeedsRebuild() {
		return nil
	}
	before := map[string]string{}
	for _, c := range b.Configs {
		before[c], _, _ = a.x.readFile(c)
	}
	out, secs, err := a.timedRun(b.Mkconfig...)
	if err != nil {
		return fmt.Errorf("%w\n%s", err, tail(out, 2000))
	}
	for _, c := range b.Configs {
		after, _, _ := a.x.readFile(c)
		if after != before[c] {
			a.r.Add(fixers.Change{Fix: a.fix, File: c, Action: fixers.ActionModify, Before: before[c], After: after, Seconds: secs})
		}
	}
	// A grub.d snippet h2kvm does not understand may still force device names: fix the
	// generated file in place rather than leave the guest unbootable.
	for _, c := range b.Configs {
		t, _, _ := a.x.readFile(c)
		if _, ch := a.rewriteKernelLines(t); ch {
			a.r.Warnf("%s: %s still writes unstable root= into %s; edited in place", a.fix, strings.Join(b.Mkconfig, " "), c)
			if err := a.edit(c, a.rewriteKernelLines); err != nil {
				return err
			}
		}
	}
	return nil
}

// timedRun runs a guest command and says how long it took.
func (a *applier) timedRun(argv ...string) (string, float64, error) {
	start := time.Now()
	out, err := a.x.run(argv...)
	return out, time.Since(start).Round(time.Millisecond).Seconds(), err
}
