package conf

import (
	"regexp"
	"strings"
)

// RewriteIfcfg removes the HWADDR= pinning of a Red Hat ifcfg file when its MAC is not kept,
// making sure DEVICE= names the interface (from the file name ifcfg-NAME) so the file still
// applies to it.
func RewriteIfcfg(text, fileName string, keep func(mac string) bool, note string) (string, bool) {
	vars := ShellVars(text)
	hw, ok := vars["HWADDR"]
	if !ok || hw == "" || keep(hw) {
		return text, false
	}
	out, changed := CommentOutShellVar(text, "HWADDR", func(string) bool { return true }, note)
	if vars["DEVICE"] == "" {
		if dev := strings.TrimPrefix(fileName, "ifcfg-"); dev != fileName && dev != "" {
			out, _ = SetShellVar(out, "DEVICE", dev)
		}
	}
	return out, changed
}

var (
	reUdevAddr    = regexp.MustCompile(`ATTRS?\{address\}=="([^"]*)"`)
	reUdevDrivers = regexp.MustCompile(`DRIVERS=="[^"]*"`)
	reUdevName    = regexp.MustCompile(`NAME:?="([^"]*)"`)
)

// UdevNetRule is a naming rule of 70-persistent-net.rules.
type UdevNetRule struct {
	Line int    `json:"line"`
	MAC  string `json:"mac,omitempty"`
	Name string `json:"name"`
}

// ParseUdevNetRules returns the rules that name a network interface.
func ParseUdevNetRules(text string) []UdevNetRule {
	var out []UdevNetRule
	for i, line := range strings.Split(text, "\n") {
		t := strings.TrimSpace(line)
		if t == "" || t[0] == '#' {
			continue
		}
		n := reUdevName.FindStringSubmatch(t)
		if n == nil {
			continue
		}
		r := UdevNetRule{Line: i, Name: n[1]}
		if m := reUdevAddr.FindStringSubmatch(t); m != nil {
			r.MAC = m[1]
		}
		out = append(out, r)
	}
	return out
}

// RewriteUdevNetRules turns rules that name an interface by a MAC that is not kept into rules
// that match the KVM NIC's driver: ATTR{address}=="..." is dropped and DRIVERS=="<driver>" is
// set.
func RewriteUdevNetRules(text string, keep func(mac string) bool, driver string) (string, bool) {
	lines := strings.Split(text, "\n")
	changed := false
	for i, line := range lines {
		t := strings.TrimSpace(line)
		if t == "" || t[0] == '#' || !reUdevName.MatchString(t) {
			continue
		}
		m := reUdevAddr.FindStringSubmatch(line)
		if m == nil || keep(m[1]) {
			continue
		}
		l := reUdevAddr.ReplaceAllString(line, "")
		want := `DRIVERS=="` + driver + `"`
		if reUdevDrivers.MatchString(l) {
			l = reUdevDrivers.ReplaceAllString(l, want)
		} else {
			l = want + ", " + strings.TrimLeft(l, " \t")
		}
		l = tidyUdev(l)
		if l != line {
			lines[i] = l
			changed = true
		}
	}
	return strings.Join(lines, "\n"), changed
}

// tidyUdev removes the empty ", ," left where a match was dropped.
func tidyUdev(l string) string {
	for {
		n := strings.ReplaceAll(l, ", ,", ",")
		n = strings.ReplaceAll(n, ",  ,", ",")
		if n == l {
			break
		}
		l = n
	}
	return strings.TrimRight(strings.TrimRight(l, " "), ",")
}
