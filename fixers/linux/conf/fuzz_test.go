package conf

import (
	"reflect"
	"slices"
	"strings"
	"testing"
)

// Fuzz tests of the parsers and editors of guest files not covered elsewhere: NetworkManager
// keyfiles (INI), module lists and the package databases. Each runs in seconds:
//
//	go test -run X -fuzz FuzzKeyfile -fuzztime 10s ./fixers/linux/conf

const nmKeyfile = "[connection]\nid=Wired\ntype=ethernet\ninterface-name=ens192\n\n[ethernet]\nmac-address=00:50:56:A1:B2:01\n\n[ipv4]\nmethod=manual\naddress1=192.0.2.10/24,192.0.2.1\n"

// isWord: s is what a fixer may add to a module list, one word of a module's name characters.
func isWord(s string) bool {
	return s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == ""
}

// FuzzKeyfile: commenting out the mac-address keys of [ethernet] (the network fix) removes
// exactly those keys, keeps every other key and every line, and is idempotent.
func FuzzKeyfile(f *testing.F) {
	f.Add(nmKeyfile)
	f.Add("[ethernet]\r\nmac-address = 00:0c:29:00:00:01\r\n[ethernet\n mac-address=x\n;mac-address=y\n[802-3-ethernet]\nmac-address=z\n")
	f.Add("=\n[]\n[ethernet]]\nmac-address\n  [ ethernet ]\nmac-address=1=2")
	f.Fuzz(func(t *testing.T, text string) {
		keys := ParseINI(text)
		n := strings.Count(text, "\n") + 1
		for _, k := range keys {
			if k.Line < 0 || k.Line >= n {
				t.Fatalf("key %+v outside %d lines", k, n)
			}
		}
		other := func(ks []INIKey) []INIKey {
			var out []INIKey
			for _, k := range ks {
				if k.Section != "ethernet" || k.Key != "mac-address" {
					out = append(out, k)
				}
			}
			return out
		}
		for name, drop := range map[string]func(string) bool{
			"all":    func(string) bool { return true },
			"vmware": IsVMwareMAC,
		} {
			out, changed := RemoveINIKeys(text, "ethernet", "mac-address", drop, "h2kvm")
			if changed != (out != text) {
				t.Fatalf("%s: changed %v but %q → %q", name, changed, text, out)
			}
			if strings.Count(out, "\n")+1 != n {
				t.Fatalf("%s: lines added or lost: %q → %q", name, text, out)
			}
			for _, v := range INIValues(out, "ethernet", "mac-address") {
				if drop(v) {
					t.Fatalf("%s: mac-address=%q left in %q", name, v, out)
				}
			}
			if got, want := other(ParseINI(out)), other(keys); !reflect.DeepEqual(got, want) {
				t.Fatalf("%s: other keys changed: %q → %q\n%+v\n%+v", name, text, out, want, got)
			}
			if again, ch := RemoveINIKeys(out, "ethernet", "mac-address", drop, "h2kvm"); ch || again != out {
				t.Fatalf("%s: not idempotent: %q → %q → %q", name, text, out, again)
			}
			nm, _ := RemoveNMMACs(text, drop, "h2kvm")
			for _, k := range ParseINI(nm) {
				if nmEthernet(k.Section) && k.Key == "mac-address" && drop(k.Value) {
					t.Fatalf("%s: RemoveNMMACs(%q) = %q keeps %s", name, text, nm, k.Value)
				}
			}
			if m := NMMAC(nm); m != "" && drop(m) {
				t.Fatalf("%s: NMMAC(%q) = %q", name, nm, m)
			}
		}
	})
}

// FuzzModuleList: adding modules to a module list or a mkinitcpio MODULES array lists them
// afterwards and keeps what was there; commenting modules out leaves none of them loaded and
// every other line as it was; all three are idempotent.
func FuzzModuleList(f *testing.F) {
	f.Add("# List of modules\nvmw_pvscsi\nmptspi\nsd_mod\nvirtio-pci\next4 opt=1\n", "virtio_blk")
	f.Add("MODULES=(ext4 \"vmw_pvscsi\")\nHOOKS=(base udev)\nMODULES=()", "virtio-net")
	f.Add("vmxnet3\r\n\t/lib/modules/x/vmxnet3.ko.xz\n#vmw_balloon\nMODULES=(", "vmxnet3")
	f.Fuzz(func(t *testing.T, text, mod string) {
		ModulesDep(text)
		ModulesBuiltin(text)
		before := ModuleList(text)
		if !isWord(mod) {
			return
		}
		add := []string{mod, "virtio_blk", "virtio_scsi"}

		out, _ := AddModuleLines(text, add, "h2kvm: virtio")
		if !strings.HasPrefix(out, text) {
			t.Fatalf("AddModuleLines(%q) = %q lost the file", text, out)
		}
		have := ModuleList(out)
		for _, m := range add {
			if !slices.Contains(have, ModuleName(m)) {
				t.Fatalf("AddModuleLines(%q, %q) = %q lacks it", text, m, out)
			}
		}
		if !slices.Equal(have[:len(before)], before) {
			t.Fatalf("AddModuleLines(%q) = %q: modules %q became %q", text, out, before, have)
		}
		if again, ch := AddModuleLines(out, add, "h2kvm: virtio"); ch || again != out {
			t.Fatalf("AddModuleLines not idempotent: %q → %q", out, again)
		}

		drop := map[string]bool{ModuleName(mod): true, "vmxnet3": true}
		out, _ = CommentOutModules(text, drop, "h2kvm")
		for _, m := range ModuleList(out) {
			if drop[m] {
				t.Fatalf("CommentOutModules(%q) = %q still loads %s", text, out, m)
			}
		}
		ol, nl := strings.Split(text, "\n"), strings.Split(out, "\n")
		if len(ol) != len(nl) {
			t.Fatalf("CommentOutModules(%q) = %q: lines added or lost", text, out)
		}
		for i := range ol {
			if f := strings.Fields(ol[i]); ol[i] != nl[i] && (len(f) == 0 || !drop[ModuleName(f[0])]) {
				t.Fatalf("CommentOutModules changed line %q to %q", ol[i], nl[i])
			}
		}
		if again, ch := CommentOutModules(out, drop, "h2kvm"); ch || again != out {
			t.Fatalf("CommentOutModules not idempotent: %q → %q", out, again)
		}

		mk, _ := AddMkinitcpioModules(text, add)
		got, found := MkinitcpioModules(mk)
		for _, m := range add {
			if !found || !slices.Contains(got, ModuleName(m)) {
				t.Fatalf("AddMkinitcpioModules(%q, %q) = %q: MODULES %q", text, m, mk, got)
			}
		}
		if again, ch := AddMkinitcpioModules(mk, add); ch || again != mk {
			t.Fatalf("AddMkinitcpioModules not idempotent: %q → %q", mk, again)
		}
	})
}

// FuzzPackageStatus: the installed packages read from a dpkg status file or rpm's output are
// among those asked for, once each, and a package the database lists as installed is found.
func FuzzPackageStatus(f *testing.F) {
	f.Add("Package: open-vm-tools\nStatus: install ok installed\nVersion: 2\n\nPackage: vmware-tools-foo\nStatus: deinstall ok config-files\n\nPackage: zsh\nStatus: hold ok installed\n", "open-vm-tools")
	f.Add("open-vm-tools installed\npackage vmware-tools is not installed\n", "vmware-tools")
	f.Add("Package:\nStatus: install ok installed\n Package: x\nDescription: y\n Status: install ok installed\n", "x")
	f.Fuzz(func(t *testing.T, db, name string) {
		names := []string{name, "open-vm-tools", "open-vm-tools-desktop"}
		for kind, fn := range map[string]func(string, []string) []string{"dpkg": DpkgInstalled, "rpm": RpmInstalled} {
			got := fn(db, names)
			seen := map[string]bool{}
			for _, p := range got {
				if !slices.Contains(names, p) || seen[p] {
					t.Fatalf("%s(%q, %q) = %q", kind, db, names, got)
				}
				seen[p] = true
			}
		}
		if !isWord(name) {
			return
		}
		dpkg := db + "\n\nPackage: " + name + "\nStatus: install ok installed\nVersion: 1\n"
		if got := DpkgInstalled(dpkg, names); !slices.Contains(got, name) {
			t.Fatalf("DpkgInstalled(%q) = %q lacks %s", dpkg, got, name)
		}
		rpm := db + "\n" + name + " installed\n"
		if got := RpmInstalled(rpm, names); !slices.Contains(got, name) {
			t.Fatalf("RpmInstalled(%q) = %q lacks %s", rpm, got, name)
		}
	})
}

// FuzzSystemdMatch: after RewriteSystemdMatch (the network fix on .link and .network units)
// no [Match] key of the unit, as ParseINI reads it, names a VMware MAC, NIC driver or PCI
// path; the keys of the other sections are kept.
func FuzzSystemdMatch(f *testing.F) {
	f.Add("[Match]\nMACAddress=00:50:56:a1:b2:01\n\n[Link]\nName=ens192\n")
	f.Add("[Match]\nDriver=vmxnet3\nPath=pci-0000:0b:00.0\n[Link]\nName=eth0")
	f.Add("[Match]\nName=ens192\n[Network]\nDHCP=yes\n[Match]\nMACAddress=00:50:56:a1:b2:01\n")
	f.Add(" [Match] \r\n MACAddress = 00:50:56:a1:b2:01 00:0c:29:00:00:01\r\n[Match\n")
	f.Fuzz(func(t *testing.T, text string) {
		out, changed := RewriteSystemdMatch(text, keepNone, "virtio_net", "h2kvm")
		if changed != (out != text) {
			t.Fatalf("changed %v but %q → %q", changed, text, out)
		}
		others := func(s string) []INIKey {
			var o []INIKey
			for _, k := range ParseINI(s) {
				if k.Section != "Match" {
					k.Line = 0 // a Driver= line may be added above
					o = append(o, k)
				}
			}
			return o
		}
		if got, want := others(out), others(text); !reflect.DeepEqual(got, want) {
			t.Fatalf("RewriteSystemdMatch(%q) = %q changed other sections:\n%+v\n%+v", text, out, want, got)
		}
		for _, k := range ParseINI(out) {
			if k.Section != "Match" {
				continue
			}
			bad := k.Key == "Path"
			for _, w := range strings.Fields(k.Value) {
				switch k.Key {
				case "MACAddress", "PermanentMACAddress":
					bad = true
				case "Driver":
					bad = bad || VMwareNICDrivers[strings.TrimPrefix(w, "!")]
				}
			}
			if bad {
				t.Fatalf("RewriteSystemdMatch(%q) = %q keeps %s=%s", text, out, k.Key, k.Value)
			}
		}
	})
}

// FuzzNetplan: after RewriteNetplanMatch no ethernet of the file, as ParseNetplan reads it,
// matches by a MAC that is not kept or by a VMware driver, and one that matched by MAC now
// matches the KVM driver.
func FuzzNetplan(f *testing.F) {
	f.Add(netplanVMware)
	f.Add("network:\n  ethernets:\n    id0:\n      match:\n        driver: vmxnet3\n        macaddress: 00:50:56:a1:b2:01\n      set-name: ens192\n")
	f.Add("network:\n ethernets:\n  a:\n   match: {macaddress: x}\n  b:\n   match:\n    macaddress: \"00:0c:29:00:00:01\" # c\n   match:\n    driver: e1000\n")
	f.Fuzz(func(t *testing.T, text string) {
		for _, n := range parseYAMLLines(text) {
			if n.key == "driver" && n.value == "" {
				return // "driver:" without a value: netplan refuses the file
			}
		}
		before := ParseNetplan(text)
		out, changed := RewriteNetplanMatch(text, keepNone, "virtio_net", "h2kvm")
		if changed != (out != text) {
			t.Fatalf("changed %v but %q → %q", changed, text, out)
		}
		after := ParseNetplan(out)
		if len(after) != len(before) {
			t.Fatalf("RewriteNetplanMatch(%q) = %q: ethernets %+v became %+v", text, out, before, after)
		}
		for i, e := range after {
			if e.MatchMAC != "" || VMwareNICDrivers[e.Driver] {
				t.Fatalf("RewriteNetplanMatch(%q) = %q: %+v", text, out, e)
			}
			if b := before[i]; b.MatchMAC != "" && e.Driver == "" {
				t.Fatalf("RewriteNetplanMatch(%q) = %q: %+v matches nothing (was %+v)", text, out, e, b)
			}
		}
	})
}
