package conf

import (
	"strings"
)

// INI-style files: systemd .link/.network/.netdev units and NetworkManager keyfiles.

// INIKey is one key=value line.
type INIKey struct {
	Line    int    `json:"line"`
	Section string `json:"section"`
	Key     string `json:"key"`
	Value   string `json:"value"`
}

// ParseINI returns the key=value lines with their section. Comments (# and ;) and lines that
// are not assignments are skipped.
func ParseINI(text string) []INIKey {
	var out []INIKey
	sec := ""
	for i, line := range strings.Split(text, "\n") {
		t := strings.TrimSpace(line)
		if t == "" || t[0] == '#' || t[0] == ';' {
			continue
		}
		if t[0] == '[' {
			if j := strings.IndexByte(t, ']'); j > 0 {
				sec = t[1:j]
			}
			continue
		}
		k, v, ok := strings.Cut(t, "=")
		if !ok {
			continue
		}
		out = append(out, INIKey{Line: i, Section: sec, Key: strings.TrimSpace(k), Value: strings.TrimSpace(v)})
	}
	return out
}

// INIValues returns the values of key in section, in order.
func INIValues(text, section, key string) []string {
	var out []string
	for _, k := range ParseINI(text) {
		if k.Section == section && k.Key == key {
			out = append(out, k.Value)
		}
	}
	return out
}

// INIGet returns the last value of key in section.
func INIGet(text, section, key string) string {
	v := INIValues(text, section, key)
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

// VMwareNICDrivers are the drivers of the virtual NICs VMware offers.
var VMwareNICDrivers = map[string]bool{"vmxnet3": true, "vmxnet": true, "vmxnet2": true,
	"e1000": true, "e1000e": true, "pcnet32": true, "vlance": true}

// NamesVMwareDriver reports whether a driver match names a VMware NIC driver: one name, or
// several as systemd (Driver=vmxnet3 e1000, !-negated) and netplan (driver: [vmxnet3, e1000])
// write them.
func NamesVMwareDriver(v string) bool {
	for _, d := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
		if VMwareNICDrivers[strings.TrimPrefix(strings.Trim(d, `[]"'`), "!")] {
			return true
		}
	}
	return false
}

// VMwareOnlyModules are kernel modules that only make sense on VMware virtual hardware.
var VMwareOnlyModules = map[string]bool{"vmxnet3": true, "vmxnet": true, "vmw_pvscsi": true,
	"vmw_balloon": true, "vmw_vmci": true, "vmw_vsock_vmci_transport": true, "vmwgfx": true,
	"mptspi": true, "mptbase": true, "mptscsih": true}

// SystemdMatchIdentifying are [Match] keys that single a device out; the others (Type,
// Virtualization, Host, ...) match whole classes.
var systemdMatchIdentifying = map[string]bool{"MACAddress": true, "PermanentMACAddress": true,
	"Name": true, "Driver": true, "Path": true, "Property": true}

// RewriteSystemdMatch makes the [Match] sections of a systemd .link or .network file match the
// KVM NIC: MACAddress=/PermanentMACAddress= lines whose addresses are not all kept, Driver=
// lines naming VMware NIC drivers and Path= lines (PCI paths change) are commented out; if no
// identifying match key is left after that, Driver=<driver> is added to the first [Match]
// section (a file that matched by class only is left alone). keep reports whether a MAC stays
// the same on KVM (the domain keeps it). Sections are read as ParseINI reads them, and every
// [Match] section counts: systemd merges repeated sections.
func RewriteSystemdMatch(text string, keep func(mac string) bool, driver, note string) (string, bool) {
	lines := strings.Split(text, "\n")
	changed, identifying := false, false
	sec := ""
	first := 0     // 0: no [Match] yet, 1: in the first [Match] section, 2: after it
	insertAt := -1 // after the last non-blank line of the first [Match] section
	for i, line := range lines {
		t := strings.TrimSpace(line)
		if t == "" {
			continue
		}
		if t[0] == '[' {
			if j := strings.IndexByte(t, ']'); j > 0 {
				sec = t[1:j]
			}
			if first == 1 {
				first = 2
			}
			if sec == "Match" && first == 0 {
				first, insertAt = 1, i+1
			}
			continue
		}
		if first == 1 {
			insertAt = i + 1
		}
		if sec != "Match" || t[0] == '#' || t[0] == ';' {
			continue
		}
		k, v, ok := strings.Cut(t, "=")
		if !ok {
			continue
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		drop := false
		switch k {
		case "MACAddress", "PermanentMACAddress":
			for _, m := range strings.Fields(v) {
				if !keep(m) {
					drop = true
				}
			}
		case "Driver":
			for _, d := range strings.Fields(v) {
				if VMwareNICDrivers[strings.TrimPrefix(d, "!")] {
					drop = true
				}
			}
		case "Path":
			drop = true
		}
		if drop {
			lines[i] = "#" + t + "  # " + note
			changed = true
			continue
		}
		if systemdMatchIdentifying[k] && v != "" {
			identifying = true
		}
	}
	if insertAt < 0 {
		return text, false
	}
	if !identifying && changed {
		lines = append(lines[:insertAt], append([]string{"Driver=" + driver}, lines[insertAt:]...)...)
	}
	return strings.Join(lines, "\n"), changed
}

// RemoveINIKeys comments out the key lines of section for which drop(value) is true.
func RemoveINIKeys(text, section, key string, drop func(value string) bool, note string) (string, bool) {
	lines := strings.Split(text, "\n")
	changed := false
	for _, k := range ParseINI(text) {
		if k.Section == section && k.Key == key && drop(k.Value) {
			lines[k.Line] = "#" + strings.TrimSpace(lines[k.Line]) + "  # " + note
			changed = true
		}
	}
	return strings.Join(lines, "\n"), changed
}

// nmEthernet reports whether a NetworkManager keyfile section is the Ethernet setting: keyfiles
// name it [ethernet], or [802-3-ethernet] as older NetworkManager versions wrote it (both are
// read today).
func nmEthernet(section string) bool { return section == "ethernet" || section == "802-3-ethernet" }

// NMMAC returns the last mac-address of a NetworkManager keyfile's Ethernet setting, "" when it
// has none.
func NMMAC(text string) string {
	mac := ""
	for _, k := range ParseINI(text) {
		if nmEthernet(k.Section) && k.Key == "mac-address" {
			mac = k.Value
		}
	}
	return mac
}

// RemoveNMMACs comments out the mac-address lines of a NetworkManager keyfile's Ethernet
// setting (under either of its names) for which drop(value) is true.
func RemoveNMMACs(text string, drop func(value string) bool, note string) (string, bool) {
	out, c1 := RemoveINIKeys(text, "ethernet", "mac-address", drop, note)
	out, c2 := RemoveINIKeys(out, "802-3-ethernet", "mac-address", drop, note)
	return out, c1 || c2
}

// NormalizeMAC lower-cases a MAC address and turns - into :; "" for anything that is not six
// hex octets.
func NormalizeMAC(s string) string {
	s = strings.ToLower(strings.Trim(strings.TrimSpace(s), `"'`))
	s = strings.ReplaceAll(s, "-", ":")
	parts := strings.Split(s, ":")
	if len(parts) != 6 {
		return ""
	}
	for _, p := range parts {
		if len(p) != 2 || strings.Trim(p, "0123456789abcdef") != "" {
			return ""
		}
	}
	return s
}

// IsVMwareMAC reports whether a MAC address is in one of VMware's OUIs.
func IsVMwareMAC(mac string) bool {
	m := NormalizeMAC(mac)
	for _, oui := range []string{"00:50:56:", "00:0c:29:", "00:05:69:", "00:1c:14:"} {
		if strings.HasPrefix(m, oui) {
			return true
		}
	}
	return false
}
