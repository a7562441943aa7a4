package conf

import (
	"strings"
)

// dracut configuration: /etc/dracut.conf and /etc/dracut.conf.d/*.conf are bash fragments that
// dracut sources. Only plain assignments are understood (key="value", key+=" value "); list
// variables hold space-separated words, and "+=" appends to what earlier files set.

// DracutSettings are the settings of one dracut configuration file that decide which drivers
// reach an initramfs.
type DracutSettings struct {
	// AddDrivers are the drivers of add_drivers and force_drivers (always installed, also in
	// host-only mode).
	AddDrivers []string
	// OmitDrivers are the drivers of omit_drivers (never installed, even when asked for).
	OmitDrivers []string
	// AddModules are the dracut modules of add_dracutmodules and force_add_dracutmodules.
	AddModules []string
	// HostOnly is the value of the last hostonly= assignment; HostOnlySet says there was one.
	HostOnly    bool
	HostOnlySet bool
}

// dracutAssignment parses one configuration line: key, value (unquoted) and whether it
// appends (+=).
func dracutAssignment(line string) (key, value string, appends, ok bool) {
	t := strings.TrimSpace(line)
	if i := strings.Index(t, "+="); i > 0 && !strings.ContainsAny(t[:i], "= \t\"'") {
		t = t[:i] + t[i+1:]
		appends = true
	}
	key, value, ok = parseAssignment(t)
	return key, value, appends, ok
}

// ParseDracutConf reads the driver settings of one dracut configuration file.
func ParseDracutConf(text string) DracutSettings {
	var s DracutSettings
	for _, line := range strings.Split(text, "\n") {
		k, v, appends, ok := dracutAssignment(line)
		if !ok {
			continue
		}
		var list *[]string
		switch k {
		case "add_drivers", "force_drivers":
			list = &s.AddDrivers
		case "omit_drivers":
			list = &s.OmitDrivers
		case "add_dracutmodules", "force_add_dracutmodules":
			list = &s.AddModules
		case "hostonly":
			s.HostOnly, s.HostOnlySet = IsTrue(v), true
			continue
		default:
			continue
		}
		if !appends {
			*list = nil
		}
		for _, w := range strings.Fields(v) {
			if k == "add_dracutmodules" || k == "force_add_dracutmodules" {
				*list = append(*list, w)
			} else {
				*list = append(*list, ModuleName(w))
			}
		}
	}
	return s
}

// DracutDrivers returns the drivers a dracut configuration file adds with add_drivers+= or
// force_drivers+=.
func DracutDrivers(text string) []string { return ParseDracutConf(text).AddDrivers }

// DracutAddDrivers returns a dracut.conf.d snippet that forces drivers (and, when modules is
// not empty, dracut modules such as lvm) into every initramfs, host-only or not.
func DracutAddDrivers(drivers, modules []string, comment string) string {
	out := "# " + comment + "\nadd_drivers+=\" " + strings.Join(drivers, " ") + " \"\n"
	if len(modules) > 0 {
		out += "add_dracutmodules+=\" " + strings.Join(modules, " ") + " \"\n"
	}
	return out
}

// DracutUnomit removes the drivers in drop from every omit_drivers assignment (omit_drivers
// is a list of regular expressions in dracut; a word is dropped when it names one of the
// drivers, with "-" and "_" equivalent). A line whose list becomes empty is commented out with
// note; other lines are rewritten as omit_drivers+=" ... " (or = when they assigned), keeping
// the remaining words in order.
func DracutUnomit(text string, drop map[string]bool, note string) (string, bool) {
	lines := strings.Split(text, "\n")
	changed := false
	for i, line := range lines {
		k, v, appends, ok := dracutAssignment(line)
		if !ok || k != "omit_drivers" {
			continue
		}
		var keep []string
		dropped := false
		for _, w := range strings.Fields(v) {
			if drop[ModuleName(w)] {
				dropped = true
				continue
			}
			keep = append(keep, w)
		}
		if !dropped {
			continue
		}
		changed = true
		if len(keep) == 0 {
			lines[i] = "#" + strings.TrimSpace(line) + "  # " + note
			continue
		}
		op := "="
		if appends {
			op = "+="
		}
		lines[i] = "omit_drivers" + op + Quote(" "+strings.Join(keep, " ")+" ") + "  # " + note
	}
	return strings.Join(lines, "\n"), changed
}
