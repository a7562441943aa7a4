package ovf

import (
	"crypto/sha256"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func parseFile(t *testing.T, p string) *Envelope {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	env, err := Parse(f, p)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func TestParseFull(t *testing.T) {
	env := parseFile(t, "testdata/full.ovf")
	s := env.System
	if s.Name != "web 01 «prod»" || s.CPUs != 4 || s.CoresPerSocket != 2 || s.MemoryMiB != 3072 ||
		s.Firmware != "efi" || !s.SecureBoot || s.OSType != "debian12_64Guest" {
		t.Fatalf("system %+v", s)
	}
	wantNICs := []NIC{{"vmxnet3", "00:50:56:ab:cd:01", "VM Network"}, {"e1000e", "", "backup"}}
	if !reflect.DeepEqual(s.NICs, wantNICs) {
		t.Fatalf("NICs %+v", s.NICs)
	}
	if len(s.Disks) != 2 {
		t.Fatalf("disks %+v", s.Disks)
	}
	d0, d1 := s.Disks[0], s.Disks[1]
	if d0.File.Href != "web-disk1.vmdk" || d0.File.Size != 123456 || d0.Capacity != 4<<30 || d0.Controller != "scsi" || d0.Bus != 1 || d0.Unit != 0 {
		t.Fatalf("disk 0 %+v %+v", d0, d0.File)
	}
	if d1.File.Href != "data/web-disk2.vmdk" || d1.Capacity != 1<<20 || d1.Controller != "sata" || d1.Bus != 0 || d1.Unit != 2 {
		t.Fatalf("disk 1 %+v %+v", d1, d1.File)
	}
	if len(env.Warnings) != 0 {
		t.Fatalf("warnings %v", env.Warnings)
	}
}

func TestParseGovmomiSample(t *testing.T) {
	ova := govmomiSample(t)
	dir := t.TempDir()
	out, err := exec.Command("tar", "-C", dir, "-xf", ova, "ttylinux-pc_i486-16.1.ovf").CombinedOutput()
	if err != nil {
		t.Skipf("tar: %v %s", err, out)
	}
	env := parseFile(t, filepath.Join(dir, "ttylinux-pc_i486-16.1.ovf"))
	s := env.System
	if s.Name != "ttylinux-pc_i486-16.1" || s.CPUs != 1 || s.MemoryMiB != 32 || s.Firmware != "efi" || s.SecureBoot {
		t.Fatalf("system %+v", s)
	}
	if len(s.NICs) != 1 || s.NICs[0].Model != "e1000" || s.NICs[0].Network != "nat" {
		t.Fatalf("NICs %+v", s.NICs)
	}
	if len(s.Disks) != 1 || s.Disks[0].Controller != "ide" || s.Disks[0].Capacity != 30<<20 || s.Disks[0].File.Size != 10595840 {
		t.Fatalf("disks %+v", s.Disks)
	}
}

func govmomiSample(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		t.Skipf("go env: %v", err)
	}
	p := filepath.Join(strings.TrimSpace(string(out)), "github.com/vmware/govmomi@v0.53.0/vapi/library/testdata/ttylinux-pc_i486-16.1.ova")
	if _, err := os.Stat(p); err != nil {
		t.Skipf("govmomi sample OVA not in the module cache: %v", err)
	}
	return p
}

func TestParseRefusals(t *testing.T) {
	full, err := os.ReadFile("testdata/full.ovf")
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string][2]string{
		"escaping href": {`ovf:href="web-disk1.vmdk"`, `ovf:href="../../etc/shadow"`},
		"absolute href": {`ovf:href="web-disk1.vmdk"`, `ovf:href="/etc/shadow"`},
		"url href":      {`ovf:href="web-disk1.vmdk"`, `ovf:href="https://evil/x.vmdk"`},
		"missing file":  {`ovf:fileRef="file2"`, `ovf:fileRef="file9"`},
		"missing disk":  {`ovf:/disk/vmdisk2`, `ovf:/disk/nope`},
		"bad memory":    {`<rasd:VirtualQuantity>3</rasd:VirtualQuantity>`, `<rasd:VirtualQuantity>x</rasd:VirtualQuantity>`},
		"huge capacity": {`ovf:capacity="4"`, `ovf:capacity="99999999999999"`},
		"not xml":       {`<Envelope`, `<<Envelope`},
		"no system":     {`<VirtualSystem ovf:id="web01">`, `<VirtualSystemX ovf:id="web01">`},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			s := strings.Replace(string(full), c[0], c[1], 1)
			if s == string(full) {
				t.Fatal("replacement did not apply")
			}
			if name == "no system" {
				s = strings.Replace(s, "</VirtualSystem>", "</VirtualSystemX>", 1)
			}
			_, err := Parse(strings.NewReader(s), "x.ovf")
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "x.ovf") {
				t.Fatalf("got %v", err)
			}
			t.Log(err)
		})
	}
}

func TestManifest(t *testing.T) {
	ovfSum := sha256.Sum256([]byte("hello"))
	mf := "SHA256(vm.ovf)= " + strings.ToUpper(string(hexOf(ovfSum[:]))) + "\n" +
		"SHA1 (vm-disk1.vmdk) = 0123456789abcdef0123456789abcdef01234567\n\n"
	m, err := ParseManifest(strings.NewReader(mf), "vm.mf")
	if err != nil {
		t.Fatal(err)
	}
	if m["vm-disk1.vmdk"].Alg != "SHA1" || m["vm.ovf"].Alg != "SHA256" {
		t.Fatalf("manifest %+v", m)
	}
	if err := m.Verify("vm.ovf", ovfSum[:]); err != nil {
		t.Fatal(err)
	}
	bad := sha256.Sum256([]byte("hellO"))
	if err := m.Verify("vm.ovf", bad[:]); !errors.Is(err, ErrDigest) {
		t.Fatalf("got %v", err)
	}
	for _, b := range []string{"SHA256(x)= 12\n", "MD5(x)= 00\n", "garbage\n", "SHA1(a)= 0123456789abcdef0123456789abcdef01234567\nSHA1(a)= 0123456789abcdef0123456789abcdef01234567\n"} {
		if _, err := ParseManifest(strings.NewReader(b), "vm.mf"); !errors.Is(err, ErrInvalid) {
			t.Fatalf("%q: got %v", b, err)
		}
	}
}

func hexOf(b []byte) []byte {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return out
}
