package conf

import (
	"path"
	"regexp"
	"strings"
)

// ModuleName normalises a kernel module name or file path: "kernel/drivers/block/virtio_blk.ko.xz"
// → "virtio_blk", "virtio-net" → "virtio_net" (the kernel treats - and _ alike).
func ModuleName(s string) string {
	s = path.Base(strings.TrimSpace(s))
	if i := strings.Index(s, ".ko"); i >= 0 {
		s = s[:i]
	}
	return strings.ReplaceAll(s, "-", "_")
}

// ModulesDep parses modules.dep ("path: deps...") into module name → path relative to the
// modules directory.
func ModulesDep(text string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(text, "\n") {
		p, _, ok := strings.Cut(line, ":")
		p = strings.TrimSpace(p)
		if !ok || p == "" || strings.HasPrefix(p, "#") {
			continue
		}
		m[ModuleName(p)] = p
	}
	return m
}

// ModulesBuiltin parses modules.builtin (one path a line) into a set of module names.
func ModulesBuiltin(text string) map[string]bool {
	m := map[string]bool{}
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		m[ModuleName(line)] = true
	}
	return m
}

// ModuleList returns the modules named by a one-module-a-line file (/etc/initramfs-tools/modules,
// /etc/modules, modules-load.d): the first word of each non-comment line.
func ModuleList(text string) []string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		out = append(out, ModuleName(f[0]))
	}
	return out
}

// AddModuleLines appends the modules of add that the file does not list yet, one a line, under a
// comment naming why. The file's existing lines are kept.
func AddModuleLines(text string, add []string, comment string) (string, bool) {
	have := map[string]bool{}
	for _, m := range ModuleList(text) {
		have[m] = true
	}
	var missing []string
	for _, m := range add {
		if !have[ModuleName(m)] {
			missing = append(missing, m)
			have[ModuleName(m)] = true
		}
	}
	if len(missing) == 0 {
		return text, false
	}
	out := text
	if out != "" && !strings.HasSuffix(out, "\n") {
		out += "\n"
	}
	if comment != "" {
		out += "# " + comment + "\n"
	}
	return out + strings.Join(missing, "\n") + "\n", true
}

// CommentOutModules comments out the lines of a one-module-a-line file that load one of drop,
// adding note. It returns whether anything changed.
func CommentOutModules(text string, drop map[string]bool, note string) (string, bool) {
	lines := strings.Split(text, "\n")
	changed := false
	for i, line := range lines {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if drop[ModuleName(f[0])] {
			lines[i] = "#" + line + "  # " + note
			changed = true
		}
	}
	return strings.Join(lines, "\n"), changed
}

var reMkinitcpioModules = regexp.MustCompile(`(?m)^MODULES=\(([^)\n]*)\)`)

// MkinitcpioModules returns the MODULES=(...) array of /etc/mkinitcpio.conf.
func MkinitcpioModules(text string) ([]string, bool) {
	m := reMkinitcpioModules.FindAllStringSubmatch(text, -1)
	if m == nil {
		return nil, false
	}
	var out []string
	for _, w := range strings.Fields(m[len(m)-1][1]) {
		out = append(out, ModuleName(strings.Trim(w, `"'`)))
	}
	return out, true
}

// AddMkinitcpioModules adds modules to the last MODULES=(...) array, or appends an array.
func AddMkinitcpioModules(text string, add []string) (string, bool) {
	have, found := MkinitcpioModules(text)
	set := map[string]bool{}
	for _, m := range have {
		set[m] = true
	}
	var missing []string
	for _, m := range add {
		if !set[ModuleName(m)] {
			missing = append(missing, m)
			set[ModuleName(m)] = true
		}
	}
	if len(missing) == 0 {
		return text, false
	}
	if !found {
		out := text
		if out != "" && !strings.HasSuffix(out, "\n") {
			out += "\n"
		}
		return out + "MODULES=(" + strings.Join(missing, " ") + ")\n", true
	}
	locs := reMkinitcpioModules.FindAllStringSubmatchIndex(text, -1)
	l := locs[len(locs)-1]
	inner := strings.TrimSpace(text[l[2]:l[3]])
	if inner != "" {
		inner += " "
	}
	inner += strings.Join(missing, " ")
	return text[:l[2]] + inner + text[l[3]:], true
}

// DpkgInstalled returns those of names that a dpkg status file (/var/lib/dpkg/status) lists
// with Status "install ok installed" (or another want with state installed), once each, in the
// order of names.
func DpkgInstalled(status string, names []string) []string {
	installed := map[string]bool{}
	pkg := ""
	for _, line := range strings.Split(status, "\n") {
		switch {
		case strings.TrimSpace(line) == "":
			pkg = ""
		case strings.HasPrefix(line, "Package:"):
			pkg = strings.TrimSpace(strings.TrimPrefix(line, "Package:"))
		case strings.HasPrefix(line, "Status:") && pkg != "":
			f := strings.Fields(strings.TrimPrefix(line, "Status:"))
			if len(f) == 3 && f[2] == "installed" {
				installed[pkg] = true
			}
		}
	}
	var out []string
	for _, n := range names {
		if installed[n] {
			out = append(out, n)
			installed[n] = false // once, also when names repeats it
		}
	}
	return out
}

// RpmQueryFormat is the rpm -q --qf format whose output RpmInstalled reads.
const RpmQueryFormat = "%{NAME} installed\\n"

// RpmInstalled returns those of names that the output of "rpm -q --qf RpmQueryFormat names..."
// lists as installed, once each, in the order of the output. rpm prints "package NAME is not
// installed" for the others, which has more than two words.
func RpmInstalled(out string, names []string) []string {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	var inst []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && want[f[0]] && f[1] == "installed" {
			inst = append(inst, f[0])
			want[f[0]] = false
		}
	}
	return inst
}
