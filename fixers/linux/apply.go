package linux

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	"libguestfs.org/guestfs"

	"github.com/h2kvm/h2kvm/fixers"
	"github.com/h2kvm/h2kvm/fixers/linux/conf"
)

// Apply carries out a plan on the guest behind a launched handle: it mounts the guest's
// filesystems read-write the way Inspect found them, runs the planned fixes in order, syncs and
// unmounts. Every fix re-reads the files it touches and is idempotent, so Apply on an already
// fixed guest (or a second Apply of the same plan) returns an empty report. Regeneration steps
// (initramfs, grub.cfg) run only when their inputs changed or their outputs are still wrong.
//
// The returned report lists every change, also when Apply fails half way (the guest is then
// partly fixed; the overlay can be thrown away). ctx is checked between steps: libguestfs
// calls themselves cannot be interrupted.
//
// Options may add an OnChange callback, which sees every change as it is made, so that a
// caller can keep a record that survives the process being killed half way.
func Apply(ctx context.Context, g *guestfs.Guestfs, p *FixPlan, opts ...ApplyOption) (*fixers.Report, error) {
	r := &fixers.Report{}
	var cfg applyConfig
	for _, o := range opts {
		o(&cfg)
	}
	if p == nil || p.Facts == nil || p.Facts.OS.Root == "" || len(p.Facts.Mounts) == 0 {
		return r, fmt.Errorf("linux: apply: plan without inspected facts: %w", ErrPlan)
	}
	if len(p.Fixes) == 0 {
		return r, nil // nothing to do: do not even mount read-write
	}
	a := &applier{x: guest{g: g, ctx: ctx}, f: p.Facts, p: p, r: r, keep: p.Options.keep(), onChange: cfg.onChange}
	g.Umount_all()
	if err := mountAll(a.x, p.Facts.Mounts, true); err != nil {
		return r, fmt.Errorf("linux: apply: %w", err)
	}
	var errs []error
	for _, fix := range p.Fixes {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		a.fix = fix.ID
		start := time.Now()
		err := a.apply(fix)
		a.notify() // the changes this fix recorded without a.add
		if r.Seconds == nil {
			r.Seconds = map[string]float64{}
		}
		r.Seconds[fix.ID] = time.Since(start).Round(time.Millisecond).Seconds()
		if err != nil {
			errs = append(errs, fmt.Errorf("linux: apply %s: %w", fix.ID, err))
			break
		}
	}
	if err := gerr(g.Sync()); err != nil {
		errs = append(errs, fmt.Errorf("linux: apply: sync: %w", err))
	}
	if err := gerr(g.Umount_all()); err != nil {
		errs = append(errs, fmt.Errorf("linux: apply: unmount: %w", err))
	}
	return r, errors.Join(errs...)
}

// ApplyOption is an option of Apply.
type ApplyOption func(*applyConfig)

type applyConfig struct {
	onChange func(fixers.Change)
}

// OnChange makes Apply call fn with every change, in the report's order, right after the
// change is made in the guest (a file edit, creation or removal at once; a guest command's
// change at the latest when its fix ends). fn runs on Apply's goroutine and must not call
// back into the guest handle.
func OnChange(fn func(fixers.Change)) ApplyOption {
	return func(c *applyConfig) { c.onChange = fn }
}

type applier struct {
	x    guest
	f    *Facts
	p    *FixPlan
	r    *fixers.Report
	keep func(string) bool
	fix  string
	// grubInputsChanged: an earlier fix of this run changed what grub-mkconfig reads.
	grubInputsChanged bool
	// onChange (may be nil) has been called with r.Changes[:notified].
	onChange func(fixers.Change)
	notified int
}

// add records a change and reports it (and any recorded before it) to onChange.
func (a *applier) add(c fixers.Change) {
	a.r.Add(c)
	a.notify()
}

// notify passes the changes recorded since the last call to onChange.
func (a *applier) notify() {
	for ; a.notified < len(a.r.Changes); a.notified++ {
		if a.onChange != nil {
			a.onChange(a.r.Changes[a.notified])
		}
	}
}

func (a *applier) apply(fix Fix) error {
	switch fix.ID {
	case FixFstab:
		return a.tab("/etc/fstab", 0, a.f.Fstab)
	case FixCrypttab:
		return a.tab("/etc/crypttab", 1, a.f.Crypttab)
	case FixNetwork:
		return a.network(fix)
	case FixVMwareModules:
		return a.vmwareModules()
	case FixVMwareTools:
		return a.vmwareTools()
	case FixInitramfs:
		return a.initramfs()
	case FixGrubDefault:
		return a.grubDefault()
	case FixGrubConsole:
		return a.grubConsole()
	case FixDeviceMap:
		n0 := len(a.r.Changes)
		err := a.remove(a.f.Boot.DeviceMap)
		a.grubInputsChanged = a.grubInputsChanged || len(a.r.Changes) > n0
		return err
	case FixBootEntries:
		return a.bootEntries(fix.Files)
	case FixGrubRegenerate:
		return a.grubRegenerate()
	case FixSELinux:
		if a.x.exists("/.autorelabel") {
			return nil
		}
		return a.write("/.autorelabel", "", 0o644)
	}
	return fmt.Errorf("unknown fix %q: %w", fix.ID, ErrPlan)
}

// edit rewrites an existing text file through fn and records the change. A missing file is
// skipped.
func (a *applier) edit(p string, fn func(old string) (string, bool)) error {
	old, found, err := a.x.readFile(p)
	if err != nil || !found {
		return err
	}
	nw, changed := fn(old)
	if !changed || nw == old {
		return nil
	}
	if err := gerr(a.x.g.Write(a.x.resolve(p), []byte(nw))); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	a.add(fixers.Change{Fix: a.fix, File: p, Action: fixers.ActionModify, Before: old, After: nw})
	return nil
}

// write creates or replaces a file with content and mode, recording the change; a file that
// already holds content is left alone.
func (a *applier) write(p, content string, mode int) error {
	old, found, err := a.x.readFile(p)
	if err != nil {
		return err
	}
	if found && old == content {
		return nil
	}
	if err := gerr(a.x.g.Mkdir_p(path.Dir(p))); err != nil {
		return fmt.Errorf("mkdir %s: %w", path.Dir(p), err)
	}
	if err := gerr(a.x.g.Write(p, []byte(content))); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	if !found {
		if err := gerr(a.x.g.Chmod(mode, p)); err != nil {
			return fmt.Errorf("chmod %s: %w", p, err)
		}
	}
	c := fixers.Change{Fix: a.fix, File: p, Action: fixers.ActionCreate, After: content}
	if found {
		c.Action, c.Before = fixers.ActionModify, old
	}
	a.add(c)
	return nil
}

// remove deletes a file or symlink, recording its content or link target.
func (a *applier) remove(p string) error {
	if p == "" || !a.x.exists(p) {
		return nil
	}
	before := ""
	if l, err := a.x.g.Is_symlink(p); err == nil && l {
		t, _ := a.x.g.Readlink(p)
		before = "symlink to " + t
	} else if t, found, _ := a.x.readFile(p); found {
		before = t
	}
	if err := gerr(a.x.g.Rm(p)); err != nil {
		return fmt.Errorf("remove %s: %w", p, err)
	}
	a.add(fixers.Change{Fix: a.fix, File: p, Action: fixers.ActionDelete, Before: before})
	return nil
}

// tab replaces unstable device names in fstab (field 0) or crypttab (field 1).
func (a *applier) tab(file string, field int, entries []TabEntry) error {
	repl := map[string]string{}
	for _, e := range entries {
		if e.Unstable && e.Stable != "" {
			repl[e.Spec] = e.Stable
		}
	}
	if len(repl) == 0 {
		return nil
	}
	return a.edit(file, func(old string) (string, bool) { return conf.ReplaceField(old, field, repl) })
}

// network re-points NIC naming and configuration at the virtio NIC.
func (a *applier) network(fix Fix) error {
	for _, file := range fix.Files {
		var err error
		base := path.Base(file)
		switch {
		case file == LinkFile:
			err = a.pinNameToVirtio()
		case strings.HasSuffix(file, ".link") || strings.HasSuffix(file, ".network"):
			err = a.edit(file, func(old string) (string, bool) {
				return conf.RewriteSystemdMatch(old, a.keep, VirtioDriver, note)
			})
		case strings.HasPrefix(file, "/etc/netplan/"):
			err = a.edit(file, func(old string) (string, bool) {
				return conf.RewriteNetplanMatch(old, a.keep, VirtioDriver, note)
			})
		case strings.HasPrefix(file, nmDir+"/"):
			err = a.edit(file, func(old string) (string, bool) {
				return conf.RemoveNMMACs(old, func(v string) bool { return !a.keep(v) }, note)
			})
		case strings.HasPrefix(base, "ifcfg-"):
			err = a.edit(file, func(old string) (string, bool) { return conf.RewriteIfcfg(old, base, a.keep, note) })
		case strings.HasSuffix(file, ".rules"):
			err = a.edit(file, func(old string) (string, bool) { return conf.RewriteUdevNetRules(old, a.keep, VirtioDriver) })
		default: // ifupdown
			err = a.edit(file, func(old string) (string, bool) {
				return conf.CommentOutIfaceOptions(old, func(_, opt, val string) bool {
					f := strings.Fields(val)
					return opt == "hwaddress" && len(f) > 0 && !a.keep(f[len(f)-1])
				}, note)
			})
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// pinNameToVirtio writes LinkFile, naming the virtio NIC like the one unpinned interface.
func (a *applier) pinNameToVirtio() error {
	name := ""
	for _, i := range a.f.Network.Interfaces {
		if strings.HasPrefix(i.Name, "en") && i.MAC == "" && i.Driver == "" {
			name = i.Name
		}
	}
	if name == "" {
		return nil
	}
	content := "# Written by h2kvm: on VMware this NIC was " + name + "; on KVM it is the " + VirtioDriver + " NIC.\n" +
		"[Match]\nDriver=" + VirtioDriver + "\n\n[Link]\nName=" + name + "\n"
	return a.write(LinkFile, content, 0o644)
}

func (a *applier) vmwareModules() error {
	files := map[string]bool{}
	for _, m := range a.f.Network.VMwareModules {
		files[m.File] = true
	}
	for _, file := range sortedKeys(files) {
		if err := a.edit(file, func(old string) (string, bool) {
			return conf.CommentOutModules(old, conf.VMwareOnlyModules, note)
		}); err != nil {
			return err
		}
	}
	return nil
}
