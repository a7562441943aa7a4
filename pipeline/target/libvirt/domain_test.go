package libvirt

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/h2kvm/h2kvm/pipeline/machine"
)

// TestDomainValidates checks generated domains against libvirt's own schema.
func TestDomainValidates(t *testing.T) {
	if _, err := exec.LookPath("virt-xml-validate"); err != nil {
		if os.Getenv("H2KVM_REQUIRE_TOOLS") != "" {
			t.Fatal("virt-xml-validate not installed")
		}
		t.Skip("virt-xml-validate not installed")
	}
	dir := t.TempDir()
	cases := map[string]struct {
		vm  machine.VM
		opt DomainOptions
	}{
		"bios": {machine.VM{Name: "web01", CPUs: 4, CoresPerSocket: 2, MemoryMiB: 4096,
			NICs: []machine.NIC{{MAC: "00:50:56:01:02:03"}, {MAC: "00:50:56:01:02:04"}}},
			DomainOptions{Type: "kvm", DiskPaths: []string{"/srv/a.qcow2", "/srv/b.qcow2"}}},
		"efi": {machine.VM{Name: "efi01", Firmware: "efi"},
			DomainOptions{DiskPaths: []string{"/srv/a.qcow2"}, NVRAMPath: "/srv/efi01_VARS.fd", Bridge: "br0"}},
		"secure": {machine.VM{Name: "sb01", Firmware: "efi", SecureBoot: true},
			DomainOptions{DiskPaths: []string{"/srv/a.raw"}, DiskFormat: "raw"}},
		"usernet": {machine.VM{Name: "boot", NICs: []machine.NIC{{MAC: "52:54:00:12:34:56"}}},
			DomainOptions{DiskPaths: []string{"/srv/a.qcow2"}, UserNetPortForward: 2222, SerialLog: "/tmp/s.log"}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			d, err := Domain(c.vm, c.opt)
			if err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(dir, name+".xml")
			if err := WriteDomainXML(d, p); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command("virt-xml-validate", p, "domain").CombinedOutput()
			if err != nil {
				t.Fatalf("virt-xml-validate: %v\n%s", err, out)
			}
			x, _ := os.ReadFile(p)
			for _, n := range c.vm.NICs {
				if !strings.Contains(string(x), n.MAC) {
					t.Errorf("MAC %s missing from domain", n.MAC)
				}
			}
		})
	}
	if _, err := Domain(machine.VM{Name: "x"}, DomainOptions{}); err == nil {
		t.Error("a domain without disks was accepted")
	}
	if _, err := Domain(machine.VM{Name: "x", Firmware: "coreboot"}, DomainOptions{DiskPaths: []string{"a"}}); err == nil {
		t.Error("an unknown firmware was accepted")
	}
}

// TestUserNetRestricted: the boot test's user-mode network isolates the guest from the host
// (whose loopback is 10.0.2.2 in the guest) and the outside; only the SSH forward is there.
// When libvirt is reachable, the QEMU command line it would run is checked too.
func TestUserNetRestricted(t *testing.T) {
	d, err := Domain(machine.VM{Name: "boot", NICs: []machine.NIC{{MAC: "52:54:00:12:34:56"}}},
		DomainOptions{DiskPaths: []string{"/srv/a.qcow2"}, UserNetPortForward: 2222})
	if err != nil {
		t.Fatal(err)
	}
	var netdev string
	for i, a := range d.QEMUCommandline.Args {
		if a.Value == "-netdev" && i+1 < len(d.QEMUCommandline.Args) {
			netdev = d.QEMUCommandline.Args[i+1].Value
		}
	}
	checkUserNetdev(t, netdev)

	if _, err := exec.LookPath("virsh"); err != nil {
		t.Skip("virsh not installed")
	}
	p := filepath.Join(t.TempDir(), "boot.xml")
	if err := WriteDomainXML(d, p); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("virsh", "-c", LibvirtURI, "domxml-to-native", "qemu-argv", p).CombinedOutput()
	if err != nil {
		if os.Getenv("H2KVM_REQUIRE_TOOLS") != "" {
			t.Fatalf("virsh domxml-to-native: %v\n%s", err, out)
		}
		t.Skipf("libvirt not reachable: %v\n%s", err, out)
	}
	argv := strings.Fields(string(out))
	var netdevs []string
	for i, a := range argv {
		if a == "-netdev" && i+1 < len(argv) {
			netdevs = append(netdevs, strings.Trim(argv[i+1], `'"`))
		}
	}
	if len(netdevs) != 1 {
		t.Fatalf("QEMU would get %d -netdev, want 1: %q\n%s", len(netdevs), netdevs, out)
	}
	checkUserNetdev(t, netdevs[0])
}

func checkUserNetdev(t *testing.T, netdev string) {
	t.Helper()
	opts := strings.Split(netdev, ",")
	if len(opts) == 0 || opts[0] != "user" {
		t.Fatalf("netdev %q is not user-mode", netdev)
	}
	var restricted bool
	var fwds []string
	for _, o := range opts[1:] {
		k, v, _ := strings.Cut(o, "=")
		switch k {
		case "restrict":
			restricted = v == "on" || v == "yes"
		case "hostfwd", "guestfwd", "smb", "tftp", "bootfile":
			fwds = append(fwds, o)
		}
	}
	if !restricted {
		t.Errorf("netdev %q lets the guest reach the host's loopback (10.0.2.2) and the outside: want restrict=on", netdev)
	}
	if len(fwds) != 1 || fwds[0] != "hostfwd=tcp:127.0.0.1:2222-:22" {
		t.Errorf("netdev %q forwards %q, want only hostfwd=tcp:127.0.0.1:2222-:22", netdev, fwds)
	}
}
