package conf

import (
	"reflect"
	"strings"
	"testing"
)

func keepNone(string) bool { return false }

func keepMAC(m string) func(string) bool {
	return func(x string) bool { return NormalizeMAC(x) == NormalizeMAC(m) }
}

func TestInterfaces(t *testing.T) {
	text := `source /etc/network/interfaces.d/*

auto lo
iface lo inet loopback

allow-hotplug ens192
iface ens192 inet static
    address 192.0.2.10/24
    gateway 192.0.2.1
    hwaddress ether 00:50:56:a1:b2:01
    dns-nameservers 192.0.2.53 \
        192.0.2.54

auto ens224
iface ens224 inet dhcp
source-directory /etc/network/more.d
`
	ifaces, sources := ParseInterfaces(text)
	if !reflect.DeepEqual(sources, []string{"/etc/network/interfaces.d/*", "/etc/network/more.d/*"}) {
		t.Errorf("sources %v", sources)
	}
	if len(ifaces) != 3 {
		t.Fatalf("ifaces %+v", ifaces)
	}
	e := ifaces[1]
	if e.Name != "ens192" || e.Method != "static" || !e.Hotplug || e.Auto || e.Option("address") != "192.0.2.10/24" ||
		e.Option("hwaddress") != "ether 00:50:56:a1:b2:01" || e.Option("dns-nameservers") != "192.0.2.53 192.0.2.54" {
		t.Errorf("ens192: %+v", e)
	}
	if ifaces[2].Name != "ens224" || !ifaces[2].Auto || ifaces[2].Method != "dhcp" {
		t.Errorf("ens224: %+v", ifaces[2])
	}
	drop := func(_, opt, val string) bool {
		f := strings.Fields(val)
		return opt == "hwaddress" && !keepNone(f[len(f)-1])
	}
	out, ch := CommentOutIfaceOptions(text, drop, "h2kvm")
	if !ch || !strings.Contains(out, "\n#    hwaddress ether 00:50:56:a1:b2:01  # h2kvm\n") {
		t.Fatalf("hwaddress not commented out:\n%s", out)
	}
	// The static configuration survives.
	after, _ := ParseInterfaces(out)
	if after[1].Option("address") != "192.0.2.10/24" || after[1].Option("gateway") != "192.0.2.1" || after[1].Option("hwaddress") != "" {
		t.Errorf("after: %+v", after[1])
	}
	if again, ch := CommentOutIfaceOptions(out, drop, "h2kvm"); ch || again != out {
		t.Error("not idempotent")
	}
	if _, ch := CommentOutIfaceOptions("iface ens192 inet dhcp\n", drop, "h2kvm"); ch {
		t.Error("changed a file without hwaddress")
	}
}

func TestRewriteSystemdMatch(t *testing.T) {
	tests := []struct {
		name, in, want string
		keep           func(string) bool
		changed        bool
	}{
		{"vmware link", "[Match]\nMACAddress=00:50:56:a1:b2:01\n\n[Link]\nName=ens192\n",
			"[Match]\n#MACAddress=00:50:56:a1:b2:01  # n\nDriver=virtio_net\n\n[Link]\nName=ens192\n", keepNone, true},
		{"kept MAC", "[Match]\nMACAddress=00:50:56:a1:b2:01\n\n[Link]\nName=ens192\n",
			"[Match]\nMACAddress=00:50:56:a1:b2:01\n\n[Link]\nName=ens192\n", keepMAC("00:50:56:A1:B2:01"), false},
		{"vmxnet3 driver and path", "[Match]\nDriver=vmxnet3\nPath=pci-0000:0b:00.0\n[Link]\nName=eth0",
			"[Match]\n#Driver=vmxnet3  # n\n#Path=pci-0000:0b:00.0  # n\nDriver=virtio_net\n[Link]\nName=eth0", keepNone, true},
		{"network file keeps Name match", "[Match]\nName=ens192\nMACAddress=00:50:56:a1:b2:01\n\n[Network]\nAddress=192.0.2.10/24\n",
			"[Match]\nName=ens192\n#MACAddress=00:50:56:a1:b2:01  # n\n\n[Network]\nAddress=192.0.2.10/24\n", keepNone, true},
		{"class match untouched", "[Match]\nType=ether\n[Network]\nDHCP=yes\n", "[Match]\nType=ether\n[Network]\nDHCP=yes\n", keepNone, false},
		{"no match section", "[Link]\nName=x\n", "[Link]\nName=x\n", keepNone, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ch := RewriteSystemdMatch(tc.in, tc.keep, "virtio_net", "n")
			if got != tc.want || ch != tc.changed {
				t.Errorf("got %q %v\nwant %q %v", got, ch, tc.want, tc.changed)
			}
			if again, ch := RewriteSystemdMatch(got, tc.keep, "virtio_net", "n"); ch || again != got {
				t.Errorf("not idempotent: %q", again)
			}
		})
	}
	link := "[Match]\nMACAddress=00:50:56:a1:b2:01\n\n[Link]\nName=ens192\n"
	out, _ := RewriteSystemdMatch(link, keepNone, "virtio_net", "n")
	if INIGet(out, "Match", "Driver") != "virtio_net" || INIGet(out, "Link", "Name") != "ens192" || INIGet(out, "Match", "MACAddress") != "" {
		t.Errorf("parsed back: %q", out)
	}
}

const netplanVMware = `# This file is generated from information provided by the datasource.
network:
  version: 2
  ethernets:
    ens192:
      match:
        macaddress: "00:50:56:a1:b2:01"
      set-name: ens192
      addresses:
        - 192.0.2.10/24
      gateway4: 192.0.2.1
      nameservers:
        addresses: [192.0.2.53]
    ens224:
      dhcp4: true
      match:
        driver: vmxnet3
`

func TestNetplan(t *testing.T) {
	got := ParseNetplan(netplanVMware)
	want := []NetplanEthernet{
		{ID: "ens192", MatchMAC: "00:50:56:a1:b2:01", SetName: "ens192", Addresses: []string{"192.0.2.10/24"}, Gateway4: "192.0.2.1"},
		{ID: "ens224", DHCP4: true, Driver: "vmxnet3"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ParseNetplan:\n got %+v\nwant %+v", got, want)
	}
	out, ch := RewriteNetplanMatch(netplanVMware, keepNone, "virtio_net", "n")
	if !ch {
		t.Fatal("no change")
	}
	if !strings.Contains(out, "\n        driver: virtio_net  # n (was macaddress: 00:50:56:a1:b2:01)\n") ||
		!strings.Contains(out, "\n        driver: virtio_net  # n (was driver: vmxnet3)\n") {
		t.Fatalf("rewrite:\n%s", out)
	}
	after := ParseNetplan(out)
	if after[0].MatchMAC != "" || after[0].Driver != "virtio_net" || after[0].SetName != "ens192" ||
		!reflect.DeepEqual(after[0].Addresses, []string{"192.0.2.10/24"}) || after[1].Driver != "virtio_net" || !after[1].DHCP4 {
		t.Errorf("after: %+v", after)
	}
	if again, ch := RewriteNetplanMatch(out, keepNone, "virtio_net", "n"); ch || again != out {
		t.Error("not idempotent")
	}
	if _, ch := RewriteNetplanMatch(netplanVMware, func(m string) bool { return true }, "virtio_net", "n"); !ch {
		t.Error("vmxnet3 driver match must be replaced even when MACs are kept")
	}
	// A MAC match next to a good driver match is only commented out.
	both := "network:\n  ethernets:\n    e:\n      match:\n        driver: virtio_net\n        macaddress: 00:50:56:00:00:01\n"
	out, _ = RewriteNetplanMatch(both, keepNone, "virtio_net", "n")
	if strings.Count(out, "driver: virtio_net") != 1 || !strings.Contains(out, "# macaddress: 00:50:56:00:00:01") {
		t.Errorf("both: %q", out)
	}
}

func TestIfcfgAndNM(t *testing.T) {
	ifcfg := "TYPE=Ethernet\nBOOTPROTO=none\nIPADDR=192.0.2.10\nPREFIX=24\nHWADDR=00:50:56:A1:B2:01\nONBOOT=yes\n"
	out, ch := RewriteIfcfg(ifcfg, "ifcfg-ens192", keepNone, "n")
	v := ShellVars(out)
	if !ch || v["HWADDR"] != "" || v["DEVICE"] != "ens192" || v["IPADDR"] != "192.0.2.10" {
		t.Errorf("ifcfg: %q", out)
	}
	if again, ch := RewriteIfcfg(out, "ifcfg-ens192", keepNone, "n"); ch || again != out {
		t.Error("ifcfg not idempotent")
	}
	if _, ch := RewriteIfcfg(ifcfg, "ifcfg-ens192", keepMAC("00:50:56:a1:b2:01"), "n"); ch {
		t.Error("kept MAC removed")
	}
	nm := "[connection]\nid=Wired\ntype=ethernet\ninterface-name=ens192\n\n[ethernet]\nmac-address=00:50:56:A1:B2:01\n\n[ipv4]\nmethod=manual\naddress1=192.0.2.10/24,192.0.2.1\n"
	out, ch = RemoveINIKeys(nm, "ethernet", "mac-address", func(v string) bool { return !keepNone(v) }, "n")
	if !ch || INIGet(out, "ethernet", "mac-address") != "" || INIGet(out, "ipv4", "address1") != "192.0.2.10/24,192.0.2.1" {
		t.Errorf("nm: %q", out)
	}
}

// TestNMEthernetAlias: a keyfile that names the Ethernet setting [802-3-ethernet], as older
// NetworkManager versions wrote it, has its MAC read and unpinned like one with [ethernet].
func TestNMEthernetAlias(t *testing.T) {
	nm := "[connection]\nid=eth0\ntype=802-3-ethernet\n\n[802-3-ethernet]\nmac-address=00:50:56:A1:B2:01\n"
	if m := NMMAC(nm); NormalizeMAC(m) != "00:50:56:a1:b2:01" {
		t.Errorf("NMMAC = %q", m)
	}
	out, ch := RemoveNMMACs(nm, IsVMwareMAC, "n")
	if !ch || NMMAC(out) != "" || !strings.Contains(out, "#mac-address=00:50:56:A1:B2:01  # n") {
		t.Errorf("RemoveNMMACs: %q", out)
	}
	if again, ch := RemoveNMMACs(out, IsVMwareMAC, "n"); ch || again != out {
		t.Error("not idempotent")
	}
}

func TestUdevRules(t *testing.T) {
	rules := `# This file was automatically generated by the /lib/udev/write_net_rules
SUBSYSTEM=="net", ACTION=="add", DRIVERS=="?*", ATTR{address}=="00:50:56:a1:b2:01", ATTR{dev_id}=="0x0", ATTR{type}=="1", KERNEL=="eth*", NAME="eth0"
SUBSYSTEM=="net", ACTION=="add", ATTR{address}=="00:50:56:a1:b2:02", NAME="eth1"
`
	got := ParseUdevNetRules(rules)
	if len(got) != 2 || got[0].MAC != "00:50:56:a1:b2:01" || got[0].Name != "eth0" || got[1].Name != "eth1" {
		t.Fatalf("parse: %+v", got)
	}
	out, ch := RewriteUdevNetRules(rules, keepMAC("00:50:56:a1:b2:02"), "virtio_net")
	want := `SUBSYSTEM=="net", ACTION=="add", DRIVERS=="virtio_net", ATTR{dev_id}=="0x0", ATTR{type}=="1", KERNEL=="eth*", NAME="eth0"`
	if !ch || strings.Split(out, "\n")[1] != want || strings.Split(out, "\n")[2] != strings.Split(rules, "\n")[2] {
		t.Errorf("rewrite:\n%s", out)
	}
	if again, ch := RewriteUdevNetRules(out, keepMAC("00:50:56:a1:b2:02"), "virtio_net"); ch || again != out {
		t.Error("not idempotent")
	}
	out, _ = RewriteUdevNetRules(rules, keepNone, "virtio_net")
	if l := strings.Split(out, "\n")[2]; l != `DRIVERS=="virtio_net", SUBSYSTEM=="net", ACTION=="add", NAME="eth1"` {
		t.Errorf("no DRIVERS clause: %q", l)
	}
}

func TestModules(t *testing.T) {
	dep := "kernel/drivers/block/virtio_blk.ko.xz: kernel/drivers/virtio/virtio.ko.xz\nkernel/drivers/net/virtio-net.ko:\n\nbad line\n"
	m := ModulesDep(dep)
	if m["virtio_blk"] != "kernel/drivers/block/virtio_blk.ko.xz" || m["virtio_net"] != "kernel/drivers/net/virtio-net.ko" || len(m) != 2 {
		t.Errorf("ModulesDep: %v", m)
	}
	b := ModulesBuiltin("kernel/drivers/virtio/virtio.ko\nkernel/drivers/virtio/virtio_pci.ko\n")
	if !b["virtio_pci"] || !b["virtio"] || b["virtio_blk"] {
		t.Errorf("ModulesBuiltin: %v", b)
	}
	mods := "# List of modules\nvmw_pvscsi\nmptspi\nsd_mod\nvirtio-pci\next4 opt=1\n"
	out, ch := AddModuleLines(mods, []string{"virtio_pci", "virtio_blk", "virtio_scsi", "virtio_net"}, "h2kvm")
	if !ch || out != mods+"# h2kvm\nvirtio_blk\nvirtio_scsi\nvirtio_net\n" {
		t.Errorf("AddModuleLines: %q", out)
	}
	if again, ch := AddModuleLines(out, []string{"virtio_pci", "virtio_blk"}, "h2kvm"); ch || again != out {
		t.Error("AddModuleLines not idempotent")
	}
	out, ch = CommentOutModules("vmw_balloon\nloop\n# vmxnet3\nvmxnet3\n", VMwareOnlyModules, "n")
	if !ch || out != "#vmw_balloon  # n\nloop\n# vmxnet3\n#vmxnet3  # n\n" {
		t.Errorf("CommentOutModules: %q", out)
	}
	mk := "MODULES=()\nHOOKS=(base udev)\n"
	out, ch = AddMkinitcpioModules(mk, []string{"virtio_blk", "virtio_pci"})
	if !ch || !strings.HasPrefix(out, "MODULES=(virtio_blk virtio_pci)\n") {
		t.Errorf("mkinitcpio: %q", out)
	}
	out2, _ := AddMkinitcpioModules("MODULES=(ext4)\n", []string{"virtio_blk", "ext4"})
	if out2 != "MODULES=(ext4 virtio_blk)\n" {
		t.Errorf("mkinitcpio: %q", out2)
	}
	if _, ch := AddMkinitcpioModules(out, []string{"virtio_blk"}); ch {
		t.Error("mkinitcpio not idempotent")
	}
	d := DracutAddDrivers([]string{"virtio_blk", "virtio_pci"}, nil, "h2kvm")
	if got := DracutDrivers(d); !reflect.DeepEqual(got, []string{"virtio_blk", "virtio_pci"}) {
		t.Errorf("dracut round trip: %v from %q", got, d)
	}
}

func FuzzNetworkConfig(f *testing.F) {
	f.Add(netplanVMware)
	f.Add("[Match]\nMACAddress=00:50:56:a1:b2:01\n\n[Link]\nName=ens192\n")
	f.Add("iface ens192 inet static\n  hwaddress ether 00:50:56:a1:b2:01 \\\n  x\n")
	f.Add(`ATTR{address}=="00:50:56:a1:b2:01", NAME="eth0"`)
	f.Fuzz(func(t *testing.T, text string) {
		type rw func(string) (string, bool)
		for name, fn := range map[string]rw{
			"netplan": func(s string) (string, bool) { return RewriteNetplanMatch(s, keepNone, "virtio_net", "n") },
			"systemd": func(s string) (string, bool) { return RewriteSystemdMatch(s, keepNone, "virtio_net", "n") },
			"udev":    func(s string) (string, bool) { return RewriteUdevNetRules(s, keepNone, "virtio_net") },
			"ifupdown": func(s string) (string, bool) {
				return CommentOutIfaceOptions(s, func(_, o, _ string) bool { return o == "hwaddress" }, "n")
			},
			"ifcfg": func(s string) (string, bool) { return RewriteIfcfg(s, "ifcfg-x", keepNone, "n") },
		} {
			out, _ := fn(text)
			again, ch := fn(out)
			if ch || again != out {
				t.Fatalf("%s not idempotent:\n%q\n→ %q\n→ %q", name, text, out, again)
			}
		}
		ParseNetplan(text)
		ParseInterfaces(text)
		ParseINI(text)
		ParseUdevNetRules(text)
	})
}

func TestDpkgInstalled(t *testing.T) {
	status := "Package: open-vm-tools\nStatus: install ok installed\nVersion: 2\n\nPackage: vmware-tools-foo\nStatus: deinstall ok config-files\n\nPackage: zsh\nStatus: hold ok installed\n"
	got := DpkgInstalled(status, []string{"zsh", "vmware-tools-foo", "open-vm-tools", "absent"})
	if !reflect.DeepEqual(got, []string{"zsh", "open-vm-tools"}) {
		t.Errorf("DpkgInstalled = %v", got)
	}
}

// TestNetplanDriverList: a match on a list of drivers that names a VMware one is a VMware
// match: it is replaced by the KVM driver, and the MAC is not merely commented out beside it.
func TestNetplanDriverList(t *testing.T) {
	in := "network:\n  ethernets:\n    id0:\n      match:\n        driver: [vmxnet3, e1000]\n        macaddress: 00:50:56:a1:b2:01\n      set-name: ens192\n"
	out, ch := RewriteNetplanMatch(in, keepNone, "virtio_net", "n")
	e := ParseNetplan(out)
	if !ch || len(e) != 1 || e[0].Driver != "virtio_net" || e[0].MatchMAC != "" || e[0].SetName != "ens192" {
		t.Fatalf("RewriteNetplanMatch:\n%s\n%+v", out, e)
	}
	if again, ch := RewriteNetplanMatch(out, keepNone, "virtio_net", "n"); ch || again != out {
		t.Error("not idempotent")
	}
}
