package linux

import (
	"context"
	"fmt"
	"strings"
	"time"

	"libguestfs.org/guestfs"

	"github.com/h2kvm/h2kvm/fixers/linux/conf"
)

// Inspect examines the guest on a launched handle and returns its facts. It is read-only: the
// guest's filesystems are mounted read-only (libguestfs inspection, then h2kvm's own mapping of
// /etc/fstab, which also understands /dev/disk/by-path and /dev/sdX names) and unmounted again
// before Inspect returns. Guest tools that list initramfs contents run inside the guest with
// their scratch files in the appliance's /dev, never on the guest's disks.
//
// A disk without an operating system, or a non-Linux one, is not an error: the Facts say so
// (OS.Root == "" or OS.Type != "linux") and Plan refuses them. Errors are for an appliance that
// cannot be asked (libguestfs failures) and for a root filesystem that cannot be mounted.
func Inspect(ctx context.Context, g *guestfs.Guestfs) (*Facts, error) {
	x := guest{g: g, ctx: ctx}
	f := &Facts{Timings: map[string]float64{}}
	t0 := time.Now()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// Start from a clean slate: a previous user of the handle may have left mounts.
	g.Umount_all()
	roots, err := g.Inspect_os()
	if err = gerr(err); err != nil {
		return nil, fmt.Errorf("linux: inspect: inspect_os: %w", err)
	}
	f.Timings["inspect_os"] = time.Since(t0).Round(time.Millisecond).Seconds()
	t0 = time.Now()
	if err := collectDevices(x, f); err != nil {
		return nil, err
	}
	f.Timings["devices"] = time.Since(t0).Round(time.Millisecond).Seconds()
	if len(roots) == 0 {
		f.finding("no-os", SeverityBreaks, "no operating system found on the disks")
		return f, nil
	}
	root := roots[0]
	for _, r := range roots {
		if t, _ := g.Inspect_get_type(r); t == "linux" {
			root = r
			break
		}
	}
	for _, r := range roots {
		if r != root {
			f.OS.OtherRoots = append(f.OS.OtherRoots, r)
		}
	}
	if err := osFacts(g, root, &f.OS); err != nil {
		return nil, err
	}
	if fs, ok := f.filesystem(root); ok {
		f.RootLVM = fs.LV
	}
	if f.OS.Type != "linux" {
		f.finding("not-linux", SeverityBreaks, fmt.Sprintf("the operating system on %s is %q, not Linux", root, f.OS.Type))
		return f, nil
	}
	t0 = time.Now()
	if err := mountGuest(x, f); err != nil {
		g.Umount_all()
		return nil, err
	}
	defer g.Umount_all()
	f.Timings["mount"] = time.Since(t0).Round(time.Millisecond).Seconds()
	steps := []struct {
		name string
		fn   func(guest, *Facts) error
	}{
		{"kernels", inspectKernels}, {"initramfs", inspectInitramfs}, {"firmware", inspectFirmware},
		{"boot", inspectBoot}, {"network", inspectNetwork}, {"vmware", inspectVMware}, {"misc", inspectMisc},
	}
	for _, step := range steps {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		t := time.Now()
		if err := step.fn(x, f); err != nil {
			return nil, err
		}
		f.Timings[step.name] = time.Since(t).Round(time.Millisecond).Seconds()
	}
	addFindings(f)
	return f, nil
}

func osFacts(g *guestfs.Guestfs, root string, o *OSFacts) error {
	o.Root = root
	var err error
	if o.Type, err = g.Inspect_get_type(root); gerr(err) != nil {
		return fmt.Errorf("linux: inspect: %s: type: %w", root, err)
	}
	o.Distro, _ = g.Inspect_get_distro(root)
	o.Product, _ = g.Inspect_get_product_name(root)
	o.Major, _ = g.Inspect_get_major_version(root)
	o.Minor, _ = g.Inspect_get_minor_version(root)
	o.Arch, _ = g.Inspect_get_arch(root)
	o.Hostname, _ = g.Inspect_get_hostname(root)
	o.PackageFormat, _ = g.Inspect_get_package_format(root)
	o.PackageManager, _ = g.Inspect_get_package_management(root)
	return nil
}

// inspectMisc: SELinux mode, cloud-init.
func inspectMisc(x guest, f *Facts) error {
	if text, found, err := x.readFile("/etc/selinux/config"); err == nil && found {
		f.SELinux = strings.ToLower(conf.ShellVars(text)["SELINUX"])
	}
	f.CloudInit = x.isFile("/etc/cloud/cloud.cfg") || x.hasCommand("cloud-init") != ""
	return nil
}
