package conf

import (
	"strings"
)

// A minimal block-style YAML reader for netplan files: each node is a "key:" or "key: value"
// line (or a "- item" line) with its indentation. Flow collections are kept as raw values.

// yamlNode is one line of a block-style YAML document.
type yamlNode struct {
	line   int
	indent int
	key    string // "" for a sequence item
	value  string // scalar on the same line, quotes removed
	parent int    // index of the parent node, -1 at top level
}

func parseYAMLLines(text string) []yamlNode {
	var nodes []yamlNode
	var stack []int // indices of open nodes
	for i, line := range strings.Split(text, "\n") {
		t := strings.TrimSpace(line)
		if t == "" || strings.HasPrefix(t, "#") || t == "---" {
			continue
		}
		indent := len(line) - len(strings.TrimLeft(line, " "))
		n := yamlNode{line: i, indent: indent, parent: -1}
		body := t
		if strings.HasPrefix(body, "- ") || body == "-" {
			body = strings.TrimSpace(strings.TrimPrefix(body, "-"))
			n.value = yamlScalar(body)
		} else if k, v, ok := cutYAMLKey(body); ok {
			n.key, n.value = k, yamlScalar(v)
		} else {
			continue
		}
		for len(stack) > 0 && nodes[stack[len(stack)-1]].indent >= indent {
			stack = stack[:len(stack)-1]
		}
		if len(stack) > 0 {
			n.parent = stack[len(stack)-1]
		}
		nodes = append(nodes, n)
		stack = append(stack, len(nodes)-1)
	}
	return nodes
}

// cutYAMLKey splits "key: value" / "key:"; quoted keys are unquoted.
func cutYAMLKey(s string) (string, string, bool) {
	i := strings.Index(s, ": ")
	if i < 0 {
		if strings.HasSuffix(s, ":") {
			i = len(s) - 1
		} else {
			return "", "", false
		}
	}
	k := strings.Trim(strings.TrimSpace(s[:i]), `"'`)
	if k == "" || strings.ContainsAny(k, "{}[]") {
		return "", "", false
	}
	return k, strings.TrimSpace(s[i+1:]), true
}

func yamlScalar(v string) string {
	v = strings.TrimSpace(v)
	if len(v) >= 2 && (v[0] == '"' && v[len(v)-1] == '"' || v[0] == '\'' && v[len(v)-1] == '\'') {
		return v[1 : len(v)-1]
	}
	if i := strings.Index(v, " #"); i >= 0 {
		v = strings.TrimSpace(v[:i])
	}
	return v
}

// NetplanEthernet is one entry under network.ethernets.
type NetplanEthernet struct {
	ID        string   `json:"id"`
	MatchMAC  string   `json:"match_mac,omitempty"`
	MatchName string   `json:"match_name,omitempty"`
	Driver    string   `json:"match_driver,omitempty"`
	SetName   string   `json:"set_name,omitempty"`
	DHCP4     bool     `json:"dhcp4,omitempty"`
	DHCP6     bool     `json:"dhcp6,omitempty"`
	Addresses []string `json:"addresses,omitempty"`
	Gateway4  string   `json:"gateway4,omitempty"`
}

// Name is the interface name the entry ends up configuring: set-name, else the id (when it is
// not matched by other means).
func (e NetplanEthernet) Name() string {
	if e.SetName != "" {
		return e.SetName
	}
	if e.MatchName != "" {
		return e.MatchName
	}
	return e.ID
}

// path returns the keys from the root to node i.
func yamlPath(nodes []yamlNode, i int) []string {
	var p []string
	for ; i >= 0; i = nodes[i].parent {
		p = append([]string{nodes[i].key}, p...)
	}
	return p
}

// ParseNetplan returns the ethernets of a netplan file.
func ParseNetplan(text string) []NetplanEthernet {
	nodes := parseYAMLLines(text)
	byID := map[string]*NetplanEthernet{}
	var order []string
	for i, n := range nodes {
		p := yamlPath(nodes, i)
		if len(p) < 3 || p[0] != "network" || p[1] != "ethernets" {
			continue
		}
		id := p[2]
		e, ok := byID[id]
		if !ok {
			e = &NetplanEthernet{ID: id}
			byID[id] = e
			order = append(order, id)
		}
		switch strings.Join(p[3:], ".") {
		case "match.macaddress":
			e.MatchMAC = n.value
		case "match.name":
			e.MatchName = n.value
		case "match.driver":
			e.Driver = n.value
		case "set-name":
			e.SetName = n.value
		case "dhcp4":
			e.DHCP4 = IsTrue(n.value)
		case "dhcp6":
			e.DHCP6 = IsTrue(n.value)
		case "gateway4":
			e.Gateway4 = n.value
		case "addresses":
			if v := strings.Trim(n.value, "[]"); v != "" {
				for _, a := range strings.Split(v, ",") {
					if a = yamlScalar(a); a != "" {
						e.Addresses = append(e.Addresses, a)
					}
				}
			}
		case "addresses.":
			if n.value != "" {
				e.Addresses = append(e.Addresses, n.value)
			}
		}
	}
	out := make([]NetplanEthernet, 0, len(order))
	for _, id := range order {
		out = append(out, *byID[id])
	}
	return out
}

// RewriteNetplanMatch makes every network.ethernets.*.match block that matches by a MAC that
// is not kept, or by a VMware NIC driver (also in a list of drivers), match driver: <driver>
// instead; an empty driver: matches nothing and does not count. The MAC line is
// replaced in place (same indentation); a VMware driver value is replaced.
func RewriteNetplanMatch(text string, keep func(mac string) bool, driver, note string) (string, bool) {
	nodes := parseYAMLLines(text)
	lines := strings.Split(text, "\n")
	changed := false
	hasDriver := map[int]bool{} // match node index → has a non-VMware driver line
	for _, n := range nodes {
		if n.key == "driver" && n.parent >= 0 && nodes[n.parent].key == "match" && n.value != "" && !NamesVMwareDriver(n.value) {
			hasDriver[n.parent] = true
		}
	}
	for _, n := range nodes {
		if n.parent < 0 || nodes[n.parent].key != "match" {
			continue
		}
		p := yamlPath(nodes, n.parent)
		if len(p) != 4 || p[0] != "network" || p[1] != "ethernets" {
			continue
		}
		pad := strings.Repeat(" ", n.indent)
		switch {
		case n.key == "macaddress" && !keep(n.value):
			if hasDriver[n.parent] {
				lines[n.line] = pad + "# macaddress: " + n.value + "  # " + note
			} else {
				lines[n.line] = pad + "driver: " + driver + "  # " + note + " (was macaddress: " + n.value + ")"
				hasDriver[n.parent] = true
			}
			changed = true
		case n.key == "driver" && NamesVMwareDriver(n.value):
			if hasDriver[n.parent] {
				lines[n.line] = pad + "# driver: " + n.value + "  # " + note
			} else {
				lines[n.line] = pad + "driver: " + driver + "  # " + note + " (was driver: " + n.value + ")"
				hasDriver[n.parent] = true
			}
			changed = true
		}
	}
	return strings.Join(lines, "\n"), changed
}
