package conf

import (
	"strings"
)

// IfupdownIface is one "iface" stanza of /etc/network/interfaces.
type IfupdownIface struct {
	Line   int    `json:"line"`
	Name   string `json:"name"`
	Family string `json:"family"` // inet, inet6, ...
	Method string `json:"method"` // dhcp, static, manual, loopback, ...
	// Options are the stanza's option lines as (name, value) pairs, in order.
	Options [][2]string `json:"options,omitempty"`
	// Auto: named on an "auto" or "allow-auto" line; Hotplug: on an "allow-hotplug" line.
	Auto    bool `json:"auto,omitempty"`
	Hotplug bool `json:"hotplug,omitempty"`
}

// Option returns the first value of option name.
func (i IfupdownIface) Option(name string) string {
	for _, o := range i.Options {
		if o[0] == name {
			return o[1]
		}
	}
	return ""
}

var ifupdownKeywords = map[string]bool{"iface": true, "mapping": true, "auto": true,
	"source": true, "source-directory": true, "no-auto-down": true, "no-scripts": true,
	"rename": true, "template": true}

func isIfupdownKeyword(w string) bool {
	return ifupdownKeywords[w] || strings.HasPrefix(w, "allow-")
}

// logicalLines joins backslash-continued lines; each result keeps the number of its first line.
func logicalLines(text string) (lines []string, nums []int) {
	phys := strings.Split(text, "\n")
	for i := 0; i < len(phys); i++ {
		start := i
		l := phys[i]
		for strings.HasSuffix(l, `\`) && i+1 < len(phys) {
			i++
			l = strings.TrimSuffix(l, `\`) + " " + phys[i]
		}
		lines = append(lines, l)
		nums = append(nums, start)
	}
	return lines, nums
}

// ParseInterfaces returns the iface stanzas of an interfaces(5) file and the patterns of its
// source / source-directory lines.
func ParseInterfaces(text string) (ifaces []IfupdownIface, sources []string) {
	auto, hot := map[string]bool{}, map[string]bool{}
	lines, nums := logicalLines(text)
	cur := -1
	for k, line := range lines {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		switch {
		case f[0] == "iface":
			cur = -1
			if len(f) >= 2 {
				it := IfupdownIface{Line: nums[k], Name: f[1]}
				if len(f) >= 3 {
					it.Family = f[2]
				}
				if len(f) >= 4 {
					it.Method = f[3]
				}
				ifaces = append(ifaces, it)
				cur = len(ifaces) - 1
			}
		case f[0] == "auto" || f[0] == "allow-auto":
			cur = -1
			for _, n := range f[1:] {
				auto[n] = true
			}
		case f[0] == "allow-hotplug":
			cur = -1
			for _, n := range f[1:] {
				hot[n] = true
			}
		case f[0] == "source" || f[0] == "source-directory":
			cur = -1
			if len(f) >= 2 {
				p := f[1]
				if f[0] == "source-directory" {
					p = strings.TrimRight(p, "/") + "/*"
				}
				sources = append(sources, p)
			}
		case isIfupdownKeyword(f[0]):
			cur = -1
		default:
			if cur >= 0 {
				ifaces[cur].Options = append(ifaces[cur].Options, [2]string{f[0], strings.Join(f[1:], " ")})
			}
		}
	}
	for i := range ifaces {
		ifaces[i].Auto = auto[ifaces[i].Name]
		ifaces[i].Hotplug = hot[ifaces[i].Name]
	}
	return ifaces, sources
}

// CommentOutIfaceOptions comments out, in the stanzas of every iface, option lines for which
// drop(iface, option, value) is true, adding note. Continuation lines are left alone.
func CommentOutIfaceOptions(text string, drop func(iface, option, value string) bool, note string) (string, bool) {
	lines := strings.Split(text, "\n")
	changed := false
	cur := ""
	for i, line := range lines {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if i > 0 && strings.HasSuffix(lines[i-1], `\`) {
			continue
		}
		switch {
		case f[0] == "iface":
			cur = ""
			if len(f) >= 2 {
				cur = f[1]
			}
		case isIfupdownKeyword(f[0]):
			cur = ""
		default:
			if cur != "" && !strings.HasSuffix(line, `\`) && drop(cur, f[0], strings.Join(f[1:], " ")) {
				lines[i] = "#" + line + "  # " + note
				changed = true
			}
		}
	}
	return strings.Join(lines, "\n"), changed
}
