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
