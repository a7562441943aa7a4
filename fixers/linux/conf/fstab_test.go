package conf

import (
	"reflect"
	"strings"
	"testing"
)

const vmwareFstab = `# <file system> <mount point> <type> <options> <dump> <pass>
/dev/disk/by-path/pci-0000:03:00.0-scsi-0:0:0:0-part1 / ext4 errors=remount-ro 0 1
/dev/disk/by-path/pci-0000:03:00.0-scsi-0:0:0:0-part2 none swap sw 0 0
`

func TestParseFstab(t *testing.T) {
	text := vmwareFstab + "\t/dev/sdb1\t/srv/my\\040data  xfs defaults  0 2 # trailing\nproc /proc proc defaults 0 0\n#/dev/sdc1 /old ext4\nbroken\n"
	got := ParseFstab(text)
	want := []FstabEntry{
		{Line: 1, Spec: "/dev/disk/by-path/pci-0000:03:00.0-scsi-0:0:0:0-part1", MountPoint: "/", Type: "ext4", Options: "errors=remount-ro"},
		{Line: 2, Spec: "/dev/disk/by-path/pci-0000:03:00.0-scsi-0:0:0:0-part2", MountPoint: "none", Type: "swap", Options: "sw"},
		{Line: 3, Spec: "/dev/sdb1", MountPoint: "/srv/my data", Type: "xfs", Options: "defaults"},
		{Line: 4, Spec: "proc", MountPoint: "/proc", Type: "proc", Options: "defaults"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ParseFstab:\n got %+v\nwant %+v", got, want)
	}
}

func TestReplaceField(t *testing.T) {
	repl := map[string]string{
		"/dev/disk/by-path/pci-0000:03:00.0-scsi-0:0:0:0-part1": "UUID=1111",
		"/dev/disk/by-path/pci-0000:03:00.0-scsi-0:0:0:0-part2": "UUID=2222",
		"/dev/sdb1": "UUID=3333",
	}
	tests := []struct {
		name, in, want string
		field          int
		changed        bool
	}{
		{"vmware fstab", vmwareFstab, "# <file system> <mount point> <type> <options> <dump> <pass>\nUUID=1111 / ext4 errors=remount-ro 0 1\nUUID=2222 none swap sw 0 0\n", 0, true},
		{"layout kept", "  /dev/sdb1\t\t/data   xfs  defaults 0 2   # comment /dev/sdb1\n", "  UUID=3333\t\t/data   xfs  defaults 0 2   # comment /dev/sdb1\n", 0, true},
		{"comment untouched", "#/dev/sdb1 /data xfs defaults 0 2\n", "#/dev/sdb1 /data xfs defaults 0 2\n", 0, false},
		{"already stable", "UUID=3333 /data xfs defaults 0 2", "UUID=3333 /data xfs defaults 0 2", 0, false},
		{"mount point equal to a key is not a spec", "LABEL=x /dev/sdb1 none bind 0 0\n", "LABEL=x /dev/sdb1 none bind 0 0\n", 0, false},
		{"crypttab device field", "cryptroot /dev/sdb1 none luks,discard\n", "cryptroot UUID=3333 none luks,discard\n", 1, true},
		{"no trailing newline, CRLF kept", "/dev/sdb1 /data xfs defaults 0 2\r", "UUID=3333 /data xfs defaults 0 2\r", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ch := ReplaceField(tc.in, tc.field, repl)
			if got != tc.want || ch != tc.changed {
				t.Errorf("got %q (%v), want %q (%v)", got, ch, tc.want, tc.changed)
			}
			again, ch2 := ReplaceField(got, tc.field, repl)
			if again != got || ch2 {
				t.Errorf("not idempotent: %q", again)
			}
		})
	}
}

func TestUnstable(t *testing.T) {
	tests := []struct {
		spec string
		want bool
	}{
		{"/dev/disk/by-path/pci-0000:03:00.0-scsi-0:0:0:0-part1", true},
		{"/dev/disk/by-id/wwn-0x6000c29-part1", true},
		{"/dev/sda1", true}, {"/dev/sdab", true}, {"/dev/hda2", true}, {"/dev/xvda1", true},
		{"/dev/nvme0n1p2", true}, {"/dev/cciss/c0d0p1", true},
		{"UUID=abcd", false}, {"LABEL=root", false}, {"PARTUUID=1234-01", false},
		{"/dev/disk/by-uuid/abcd", false}, {"/dev/mapper/vg-root", false}, {"/dev/vg/root", false},
		{"/dev/md0", false}, {"proc", false}, {"tmpfs", false}, {"server:/export", false}, {"", false},
		{`"/dev/sda1"`, true},
	}
	for _, tc := range tests {
		if got, _ := Unstable(tc.spec); got != tc.want {
			t.Errorf("Unstable(%q) = %v, want %v", tc.spec, got, tc.want)
		}
	}
}

func TestPartitionAndDisk(t *testing.T) {
	tests := []struct {
		spec      string
		part, idx int
	}{
		{"/dev/sda1", 1, 0}, {"/dev/sdb12", 12, 1}, {"/dev/sdaa3", 3, 26}, {"/dev/vdc", 0, 2},
		{"/dev/hdb2", 2, 1}, {"/dev/xvda1", 1, 0}, {"/dev/nvme1n1p3", 3, 1}, {"/dev/nvme0n1", 0, 0},
		{"/dev/disk/by-path/pci-0000:03:00.0-scsi-0:0:1:0-part2", 2, -1},
		{"/dev/disk/by-id/ata-VMware_Virtual_IDE_Hard_Drive_00000000000000000001-part5", 5, -1},
		{"/dev/disk/by-path/pci-0000:03:00.0-scsi-0:0:0:0", 0, -1}, {"UUID=x", 0, -1}, {"/dev/sd", 0, -1},
	}
	for _, tc := range tests {
		if got := PartitionNumber(tc.spec); got != tc.part {
			t.Errorf("PartitionNumber(%q) = %d, want %d", tc.spec, got, tc.part)
		}
		if got := DiskIndex(tc.spec); got != tc.idx {
			t.Errorf("DiskIndex(%q) = %d, want %d", tc.spec, got, tc.idx)
		}
	}
}

func TestTagKind(t *testing.T) {
	tests := []struct{ spec, kind, val string }{
		{"UUID=abc", "UUID", "abc"}, {`LABEL="my root"`, "LABEL", "my root"}, {"PARTUUID=1-01", "PARTUUID", "1-01"},
		{"/dev/disk/by-label/my\\x20root", "LABEL", "my root"}, {"/dev/disk/by-uuid/abc", "UUID", "abc"},
		{"/dev/disk/by-partlabel/EFI", "PARTLABEL", "EFI"}, {"/dev/sda1", "", ""},
	}
	for _, tc := range tests {
		k, v := TagKind(tc.spec)
		if k != tc.kind || v != tc.val {
			t.Errorf("TagKind(%q) = %q %q, want %q %q", tc.spec, k, v, tc.kind, tc.val)
		}
	}
}

func FuzzFstab(f *testing.F) {
	f.Add(vmwareFstab)
	f.Add("UUID=x / ext4 defaults 0 1\n/dev/sda2\tnone swap sw\n#c\n\\0 \\1 \\777")
	f.Add("/dev/disk/by-label/a\\x2 /mnt\\04 x")
	f.Fuzz(func(t *testing.T, text string) {
		entries := ParseFstab(text)
		repl := map[string]string{}
		for _, e := range entries {
			Unstable(e.Spec)
			TagKind(e.Spec)
			PartitionNumber(e.Spec)
			DiskIndex(e.Spec)
			repl[e.Spec] = "UUID=0000-1111"
		}
		out, _ := ReplaceField(text, 0, repl)
		if strings.Count(out, "\n") != strings.Count(text, "\n") {
			t.Fatalf("line count changed: %q → %q", text, out)
		}
		again, ch := ReplaceField(out, 0, repl)
		if ch || again != out {
			t.Fatalf("not idempotent: %q → %q → %q", text, out, again)
		}
		for _, e := range ParseFstab(out) {
			if _, hit := repl[e.Spec]; hit && e.Spec != "UUID=0000-1111" {
				t.Fatalf("entry %q not replaced in %q", e.Spec, out)
			}
		}
	})
}
