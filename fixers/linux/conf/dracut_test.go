package conf

import (
	"reflect"
	"strings"
	"testing"
)

// dracutVMware is the debian-lvm test guest's /etc/dracut.conf.d/10-vmware.conf.
const dracutVMware = `# Built on VMware: only what this host needs, never paravirtual drivers of other hypervisors.
hostonly="yes"
omit_drivers+=" virtio_blk virtio_scsi virtio_pci virtio_net virtio_console "
add_drivers+=" vmw_pvscsi mptspi mptsas sd_mod ata_piix ahci dm_mod ext4 "
add_dracutmodules+=" lvm "
`

var virtioSet = map[string]bool{"virtio_blk": true, "virtio_scsi": true, "virtio_pci": true, "virtio_net": true}

func TestParseDracutConf(t *testing.T) {
	s := ParseDracutConf(dracutVMware)
	want := DracutSettings{
		AddDrivers:  []string{"vmw_pvscsi", "mptspi", "mptsas", "sd_mod", "ata_piix", "ahci", "dm_mod", "ext4"},
		OmitDrivers: []string{"virtio_blk", "virtio_scsi", "virtio_pci", "virtio_net", "virtio_console"},
		AddModules:  []string{"lvm"},
		HostOnly:    true, HostOnlySet: true,
	}
	if !reflect.DeepEqual(s, want) {
		t.Fatalf("got %+v\nwant %+v", s, want)
	}
	// "=" replaces what the file set before, "+=" appends; force_drivers counts as added;
	// hostonly=no is remembered as set.
	s = ParseDracutConf("add_drivers=\"a\"\nadd_drivers=\"b\"\nforce_drivers+=\" c-d \"\nhostonly=no\n#omit_drivers=\"x\"\n")
	if !reflect.DeepEqual(s.AddDrivers, []string{"b", "c_d"}) || s.HostOnly || !s.HostOnlySet || s.OmitDrivers != nil {
		t.Fatalf("got %+v", s)
	}
}

func TestDracutUnomit(t *testing.T) {
	out, ch := DracutUnomit(dracutVMware, virtioSet, "h2kvm")
	if !ch {
		t.Fatal("nothing changed")
	}
	wantLine := `omit_drivers+=" virtio_console "  # h2kvm`
	if !strings.Contains(out, "\n"+wantLine+"\n") {
		t.Fatalf("omit line not rewritten:\n%s", out)
	}
	// Only that line changed.
	a, b := strings.Split(dracutVMware, "\n"), strings.Split(out, "\n")
	if len(a) != len(b) {
		t.Fatalf("line count %d → %d", len(a), len(b))
	}
	for i := range a {
		if a[i] != b[i] && !strings.HasPrefix(a[i], "omit_drivers") {
			t.Errorf("line %d changed: %q → %q", i, a[i], b[i])
		}
	}
	if s := ParseDracutConf(out); !reflect.DeepEqual(s.OmitDrivers, []string{"virtio_console"}) || len(s.AddDrivers) != 8 {
		t.Fatalf("after: %+v", s)
	}
	if again, ch := DracutUnomit(out, virtioSet, "h2kvm"); ch || again != out {
		t.Fatalf("not idempotent: %q", again)
	}
	// A line that only omits virtio is commented out; a "=" stays "=".
	out, ch = DracutUnomit("omit_drivers=\"virtio-blk\"\nomit_drivers=\"virtio_pci floppy\"\n", virtioSet, "n")
	if !ch || out != "#omit_drivers=\"virtio-blk\"  # n\nomit_drivers=\" floppy \"  # n\n" {
		t.Fatalf("got %q", out)
	}
	if _, ch := DracutUnomit("omit_drivers+=\" floppy \"\n", virtioSet, "n"); ch {
		t.Fatal("changed a file omitting no virtio driver")
	}
}

func TestDracutAddDriversRoundTrip(t *testing.T) {
	d := DracutAddDrivers([]string{"virtio_blk", "dm_mod"}, []string{"lvm"}, "h2kvm")
	s := ParseDracutConf(d)
	if !reflect.DeepEqual(s.AddDrivers, []string{"virtio_blk", "dm_mod"}) || !reflect.DeepEqual(s.AddModules, []string{"lvm"}) {
		t.Fatalf("round trip %+v from %q", s, d)
	}
}

func FuzzDracutConf(f *testing.F) {
	f.Add(dracutVMware)
	f.Add("omit_drivers+=\"virtio_blk\\\" x\"\n")
	f.Add("omit_drivers+=' virtio_pci '  # c\nomit_drivers+=a+=b\n")
	f.Fuzz(func(t *testing.T, text string) {
		s := ParseDracutConf(text)
		out, _ := DracutUnomit(text, virtioSet, "n")
		again, ch := DracutUnomit(out, virtioSet, "n")
		if ch || again != out {
			t.Fatalf("not idempotent:\n%q\n→ %q\n→ %q", text, out, again)
		}
		for _, d := range ParseDracutConf(out).OmitDrivers {
			if virtioSet[d] {
				t.Fatalf("%s still omitted in %q", d, out)
			}
		}
		if strings.Count(out, "\n") != strings.Count(text, "\n") {
			t.Fatalf("line count changed: %q → %q", text, out)
		}
		_ = s
	})
}
