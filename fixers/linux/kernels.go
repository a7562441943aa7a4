package linux

import (
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/h2kvm/h2kvm/fixers/linux/conf"
)

// inspectKernels lists /boot/vmlinuz-* and, for each, how it provides the virtio drivers.
func inspectKernels(x guest, f *Facts) error {
	for _, img := range x.glob("/boot/vmlinuz-*") {
		v := strings.TrimPrefix(path.Base(img), "vmlinuz-")
		k := Kernel{Version: v, Image: img, Virtio: map[string]string{}}
		for _, d := range []string{"/lib/modules/" + v, "/usr/lib/modules/" + v} {
			if x.isDir(d) {
				k.ModulesDir = d
				break
			}
		}
		if k.ModulesDir != "" {
			builtin := map[string]bool{}
			if t, found, _ := x.readFile(k.ModulesDir + "/modules.builtin"); found {
				builtin = conf.ModulesBuiltin(t)
			}
			dep := map[string]string{}
			if t, found, _ := x.readFile(k.ModulesDir + "/modules.dep"); found {
				dep = conf.ModulesDep(t)
			}
			for _, m := range VirtioModules {
				switch {
				case builtin[m]:
					k.Virtio[m] = "builtin"
				case dep[m] != "" && x.exists(k.ModulesDir+"/"+dep[m]):
					// modules.dep may be stale: only a file that is there counts.
					k.Virtio[m] = "module"
				case dep[m] == "" && len(x.glob(k.ModulesDir+"/kernel/drivers/*/"+m+".ko*")) > 0:
					k.Virtio[m] = "module"
				default:
					k.Virtio[m] = ""
				}
			}
		}
		for _, p := range []string{"/boot/initrd.img-" + v, "/boot/initramfs-" + v + ".img", "/boot/initrd-" + v, "/boot/initrd-" + v + ".img"} {
			if x.isFile(p) {
				k.Initramfs = p
				break
			}
		}
		f.Kernels = append(f.Kernels, k)
	}
	return nil
}

// inspectInitramfs finds the initramfs generator and its module configuration, and lists the
// virtio drivers each kernel's initramfs holds.
func inspectInitramfs(x guest, f *Facts) error {
	ir := &f.Initramfs
	switch {
	case x.hasCommand("update-initramfs") != "" || x.isDir("/etc/initramfs-tools"):
		ir.Generator = "initramfs-tools"
		ir.Config = "/etc/initramfs-tools/modules"
		if t, found, _ := x.readFile(ir.Config); found {
			ir.Modules = conf.ModuleList(t)
		}
		ir.ModulesPolicy = "most"
		confs := append([]string{"/etc/initramfs-tools/initramfs.conf"}, x.glob("/etc/initramfs-tools/conf.d/*")...)
		for _, c := range confs {
			t, found, _ := x.readFile(c)
			if !found {
				continue
			}
			vars := conf.ShellVars(t)
			if v, ok := vars["MODULES"]; ok {
				ir.ModulesPolicy = v
			}
			if v, ok := vars["RESUME"]; ok {
				ir.Resume, ir.ResumeFile = v, c
			}
		}
	case x.hasCommand("dracut") != "":
		ir.Generator = "dracut"
		ir.Config = DracutConfig
		inspectDracut(x, ir)
	case x.hasCommand("mkinitcpio") != "":
		ir.Generator = "mkinitcpio"
		ir.Config = "/etc/mkinitcpio.conf"
		if t, found, _ := x.readFile(ir.Config); found {
			ir.Modules, _ = conf.MkinitcpioModules(t)
		}
	}
	for i := range f.Kernels {
		k := &f.Kernels[i]
		if k.Initramfs == "" {
			continue
		}
		present, err := listInitramfs(x, ir.Generator, k.Initramfs)
		if err != nil {
			k.InitramfsError = err.Error()
			continue
		}
		k.InitramfsVirtio = map[string]bool{}
		for _, m := range VirtioModules {
			k.InitramfsVirtio[m] = present[m] || k.Virtio[m] == "builtin"
		}
	}
	return nil
}

// DracutConfig is the dracut.conf.d file h2kvm writes to add the virtio drivers.
const DracutConfig = "/etc/dracut.conf.d/90-h2kvm-virtio.conf"

// inspectDracut reads dracut's configuration the way dracut sources it: /etc/dracut.conf, then
// the *.conf files of /usr/lib/dracut/dracut.conf.d and /etc/dracut.conf.d in the order of
// their names (an /etc file shadows a /usr/lib file of the same name).
func inspectDracut(x guest, ir *Initramfs) {
	byName := map[string]string{}
	for _, dir := range []string{"/usr/lib/dracut/dracut.conf.d", "/etc/dracut.conf.d"} {
		for _, c := range x.glob(dir + "/*.conf") {
			byName[path.Base(c)] = c
		}
	}
	files := []string{"/etc/dracut.conf"}
	for _, n := range slices.Sorted(maps.Keys(byName)) {
		files = append(files, byName[n])
	}
	omitted := map[string]bool{}
	for _, c := range files {
		t, found, _ := x.readFile(c)
		if !found {
			continue
		}
		s := conf.ParseDracutConf(t)
		ir.Modules = append(ir.Modules, s.AddDrivers...)
		ir.DracutModules = append(ir.DracutModules, s.AddModules...)
		if s.HostOnlySet {
			ir.HostOnly, ir.HostOnlyFile = s.HostOnly, c
		}
		inFile := false
		for _, d := range s.OmitDrivers {
			if slices.Contains(VirtioModules, d) {
				inFile = true
				if !omitted[d] {
					omitted[d] = true
					ir.OmittedVirtio = append(ir.OmittedVirtio, d)
				}
			}
		}
		if inFile {
			ir.OmitFiles = append(ir.OmitFiles, c)
		}
	}
	if !ir.HostOnly {
		ir.HostOnlyFile = ""
	}
}

// listInitramfs returns the kernel modules an initramfs image holds. It prefers the host's
// lsinitramfs on a downloaded copy (initramfs-tools is on every Debian host that runs the
// libguestfs appliance, and it reads any cpio + gzip/xz/zstd/lz4 image, also dracut's and
// mkinitcpio's): under TCG the guest's own tool takes minutes. Without it, the guest's tool runs
// inside the guest with $TMPDIR in the appliance's /dev (a memory file system libguestfs
// bind-mounts into the guest root), so nothing is written to the guest either way.
func listInitramfs(x guest, generator, image string) (map[string]bool, error) {
	if tool, err := exec.LookPath("lsinitramfs"); err == nil {
		if mods, err := listOnHost(x, tool, image); err == nil {
			return mods, nil
		}
	}
	var argv []string
	switch generator {
	case "initramfs-tools":
		argv = []string{"lsinitramfs", image}
	case "dracut":
		argv = []string{"lsinitrd", image}
	case "mkinitcpio":
		argv = []string{"lsinitcpio", image}
	default:
		return nil, fmt.Errorf("no initramfs generator to list %s with", image)
	}
	if x.hasCommand(argv[0]) == "" {
		return nil, fmt.Errorf("%s not installed in the guest", argv[0])
	}
	out, err := x.run(append([]string{"env", "TMPDIR=/dev"}, argv...)...)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", image, err)
	}
	return modulesIn(out), nil
}

// listOnHost downloads image to a temporary folder and lists it with the host's tool. The tool
// only lists (cpio --list): nothing from the image is extracted.
func listOnHost(x guest, tool, image string) (map[string]bool, error) {
	dir, err := os.MkdirTemp("", "h2kvm-initramfs-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	local := filepath.Join(dir, "initramfs")
	rp := x.resolve(image)
	if rp == "" {
		return nil, fmt.Errorf("%s: not found", image)
	}
	if err := gerr(x.g.Download(rp, local)); err != nil {
		return nil, fmt.Errorf("download %s: %w", image, err)
	}
	cmd := exec.CommandContext(x.context(), tool, local)
	cmd.Env = append(os.Environ(), "TMPDIR="+dir)
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", tool, image, err)
	}
	return modulesIn(string(out)), nil
}

// modulesIn collects the module names of the .ko files in a listing.
func modulesIn(listing string) map[string]bool {
	mods := map[string]bool{}
	for _, w := range strings.Fields(listing) {
		if strings.Contains(w, ".ko") {
			mods[conf.ModuleName(w)] = true
		}
	}
	return mods
}
