package linux

import (
	"path"
	"strings"

	"github.com/h2kvm/h2kvm/fixers/linux/conf"
)

// Network configuration locations.
const (
	ifupdownMain  = "/etc/network/interfaces"
	networkdDir   = "/etc/systemd/network"
	nmDir         = "/etc/NetworkManager/system-connections"
	ifcfgRHDir    = "/etc/sysconfig/network-scripts"
	ifcfgSUSEDir  = "/etc/sysconfig/network"
	persistentNet = "/etc/udev/rules.d/70-persistent-net.rules"
)

// interfacesFiles returns /etc/network/interfaces and the files it sources, in order.
func interfacesFiles(x guest) []string {
	var out []string
	seen := map[string]bool{}
	var walk func(p string, depth int)
	walk = func(p string, depth int) {
		if seen[p] || depth > 4 {
			return
		}
		seen[p] = true
		t, found, _ := x.readFile(p)
		if !found {
			return
		}
		out = append(out, p)
		_, sources := conf.ParseInterfaces(t)
		for _, s := range sources {
			if !strings.HasPrefix(s, "/") {
				s = path.Join(path.Dir(p), s)
			}
			for _, m := range x.glob(s) {
				walk(m, depth+1)
			}
		}
	}
	walk(ifupdownMain, 0)
	return out
}

func addBackend(n *Network, b string) {
	for _, h := range n.Backends {
		if h == b {
			return
		}
	}
	n.Backends = append(n.Backends, b)
}

// inspectNetwork reads every network configuration system the guest may use.
func inspectNetwork(x guest, f *Facts) error {
	n := &f.Network
	n.Udevd = x.isFile("/lib/systemd/systemd-udevd") || x.isFile("/usr/lib/systemd/systemd-udevd") || x.hasCommand("udevd") != ""
	// ifupdown
	for _, file := range interfacesFiles(x) {
		t, _, _ := x.readFile(file)
		ifaces, _ := conf.ParseInterfaces(t)
		for _, it := range ifaces {
			if it.Method == "loopback" || it.Name == "lo" {
				continue
			}
			addBackend(n, "ifupdown")
			i := Interface{Name: it.Name, Backend: "ifupdown", File: file, Method: it.Method}
			if a := it.Option("address"); a != "" {
				i.Addresses = append(i.Addresses, a)
			}
			if hw := strings.Fields(it.Option("hwaddress")); len(hw) > 0 {
				i.MAC = conf.NormalizeMAC(hw[len(hw)-1])
			}
			n.Interfaces = append(n.Interfaces, i)
		}
	}
	// netplan
	for _, file := range x.glob("/etc/netplan/*.yaml") {
		t, _, _ := x.readFile(file)
		for _, e := range conf.ParseNetplan(t) {
			addBackend(n, "netplan")
			i := Interface{Name: e.Name(), Backend: "netplan", File: file, MAC: conf.NormalizeMAC(e.MatchMAC),
				Driver: e.Driver, Addresses: e.Addresses, Method: "manual"}
			if e.DHCP4 || e.DHCP6 {
				i.Method = "dhcp"
			} else if len(e.Addresses) > 0 {
				i.Method = "static"
			}
			n.Interfaces = append(n.Interfaces, i)
		}
	}
	// systemd-networkd and .link files
	for _, file := range x.glob(networkdDir + "/*.network") {
		t, _, _ := x.readFile(file)
		addBackend(n, "systemd-networkd")
		i := Interface{Name: conf.INIGet(t, "Match", "Name"), Backend: "systemd-networkd", File: file,
			MAC: conf.NormalizeMAC(conf.INIGet(t, "Match", "MACAddress")), Driver: conf.INIGet(t, "Match", "Driver"),
			Addresses: conf.INIValues(t, "Network", "Address"), Method: "manual"}
		if d := strings.ToLower(conf.INIGet(t, "Network", "DHCP")); d != "" && d != "no" && d != "false" {
			i.Method = "dhcp"
		} else if len(i.Addresses) > 0 {
			i.Method = "static"
		}
		n.Interfaces = append(n.Interfaces, i)
	}
	for _, file := range x.glob(networkdDir + "/*.link") {
		t, _, _ := x.readFile(file)
		n.Links = append(n.Links, LinkRule{File: file, Kind: "systemd-link",
			MAC: conf.NormalizeMAC(conf.INIGet(t, "Match", "MACAddress")), Driver: conf.INIGet(t, "Match", "Driver"),
			Path: conf.INIGet(t, "Match", "Path"), Name: conf.INIGet(t, "Link", "Name")})
	}
	// NetworkManager keyfiles
	for _, file := range x.glob(nmDir + "/*") {
		t, found, _ := x.readFile(file)
		if !found {
			continue
		}
		typ := conf.INIGet(t, "connection", "type")
		if typ != "ethernet" && typ != "802-3-ethernet" {
			continue
		}
		addBackend(n, "networkmanager")
		i := Interface{Name: conf.INIGet(t, "connection", "interface-name"), Backend: "networkmanager", File: file,
			MAC: conf.NormalizeMAC(conf.NMMAC(t))}
		switch conf.INIGet(t, "ipv4", "method") {
		case "auto", "":
			i.Method = "dhcp"
		case "manual":
			i.Method = "static"
		default:
			i.Method = conf.INIGet(t, "ipv4", "method")
		}
		for _, k := range conf.ParseINI(t) {
			if k.Section == "ipv4" && strings.HasPrefix(k.Key, "address") {
				i.Addresses = append(i.Addresses, strings.Split(k.Value, ",")[0])
			}
		}
		n.Interfaces = append(n.Interfaces, i)
	}
	// ifcfg (Red Hat network-scripts, SUSE wicked)
	for _, dir := range []string{ifcfgRHDir, ifcfgSUSEDir} {
		for _, file := range x.glob(dir + "/ifcfg-*") {
			if path.Base(file) == "ifcfg-lo" {
				continue
			}
			t, found, _ := x.readFile(file)
			if !found {
				continue
			}
			v := conf.ShellVars(t)
			name := v["DEVICE"]
			if name == "" {
				name = strings.TrimPrefix(path.Base(file), "ifcfg-")
			}
			addBackend(n, "network-scripts")
			i := Interface{Name: name, Backend: "network-scripts", File: file, MAC: conf.NormalizeMAC(v["HWADDR"])}
			switch strings.ToLower(strings.Trim(v["BOOTPROTO"], "'\"")) {
			case "dhcp", "dhcp4", "dhcp6":
				i.Method = "dhcp"
			case "static", "none", "":
				i.Method = "static"
			default:
				i.Method = v["BOOTPROTO"]
			}
			for _, k := range []string{"IPADDR", "IPADDR0", "IPADDR1"} {
				if v[k] != "" {
					i.Addresses = append(i.Addresses, v[k])
				}
			}
			if len(i.Addresses) == 0 && i.Method == "static" {
				i.Method = "manual"
			}
			n.Interfaces = append(n.Interfaces, i)
		}
	}
	// udev persistent-net rules
	for _, file := range x.glob("/etc/udev/rules.d/*persistent-net*.rules") {
		t, _, _ := x.readFile(file)
		for _, r := range conf.ParseUdevNetRules(t) {
			n.Links = append(n.Links, LinkRule{File: file, Kind: "udev-rule", MAC: conf.NormalizeMAC(r.MAC), Name: r.Name})
		}
	}
	// Explicit loads of VMware-only modules.
	for _, file := range append([]string{"/etc/modules"}, x.glob("/etc/modules-load.d/*.conf")...) {
		t, found, _ := x.readFile(file)
		if !found {
			continue
		}
		for _, m := range conf.ModuleList(t) {
			if conf.VMwareOnlyModules[m] {
				n.VMwareModules = append(n.VMwareModules, ModuleRef{File: file, Module: m})
			}
		}
	}
	return nil
}

// inspectVMware finds VMware's guest tools: packages, enabled units, a tarball install.
func inspectVMware(x guest, f *Facts) error {
	v := &f.VMware
	if apps, err := x.g.Inspect_list_applications2(f.OS.Root); err == nil && apps != nil {
		for _, a := range *apps {
			if isVMwareToolsPackage(a.App2_name) {
				v.Packages = append(v.Packages, a.App2_name)
			}
		}
	}
	for _, pat := range []string{"/etc/systemd/system/*.wants/open-vm-tools*", "/etc/systemd/system/*.wants/vmtoolsd*",
		"/etc/systemd/system/*.wants/vgauth*", "/etc/systemd/system/*.wants/vmware*",
		"/etc/systemd/system/*.wants/run-vmblock*", "/etc/rc[2-5].d/S*vmware-tools*", "/etc/rc[2-5].d/S*open-vm-tools*"} {
		v.Units = append(v.Units, x.glob(pat)...)
	}
	v.Tarball = x.isFile("/usr/bin/vmware-uninstall-tools.pl") || x.isFile("/etc/vmware-tools/locations")
	return nil
}

func isVMwareToolsPackage(name string) bool {
	n := strings.ToLower(name)
	return strings.HasPrefix(n, "open-vm-tools") || strings.HasPrefix(n, "vmware-tools") || n == "vmwaretools"
}
