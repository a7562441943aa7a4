package linux

import (
	"fmt"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/h2kvm/h2kvm/fixers/linux/conf"
)

// ESPType is the GPT partition type GUID of an EFI system partition.
const ESPType = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"

// collectDevices fills f.Disks and f.Filesystems from the appliance's view of the disks. Every
// call here runs a program in the appliance (parted, blkid, lvm), which is slow under TCG, so
// each is made once: partition tables per disk, the LV list once, blkid per filesystem.
func collectDevices(x guest, f *Facts) error {
	disks, err := x.g.List_devices()
	if err = gerr(err); err != nil {
		return fmt.Errorf("linux: inspect: list devices: %w", err)
	}
	parttype := map[string]string{}
	for _, d := range disks {
		pt, err := x.g.Part_get_parttype(d)
		if err != nil {
			pt = ""
		}
		parttype[d] = pt
		f.Disks = append(f.Disks, Disk{Device: d, PartitionTable: pt})
	}
	fss, err := x.g.List_filesystems()
	if err = gerr(err); err != nil {
		return fmt.Errorf("linux: inspect: list filesystems: %w", err)
	}
	lvs := map[string]bool{}
	if names, err := x.g.Lvs(); err == nil {
		for _, n := range names {
			lvs[n] = true
		}
	}
	devs := make([]string, 0, len(fss))
	for d := range fss {
		devs = append(devs, d)
	}
	sort.Strings(devs)
	for _, d := range devs {
		fs := Filesystem{Device: d, Type: fss[d]}
		if bl, err := x.g.Blkid(d); err == nil {
			fs.UUID, fs.Label = bl["UUID"], bl["LABEL"]
			fs.PartUUID, fs.PartLabel = bl["PART_ENTRY_UUID"], bl["PART_ENTRY_NAME"]
			if fs.Type == "" || fs.Type == "unknown" {
				fs.Type = bl["TYPE"]
			}
		}
		switch {
		case lvs[d]:
			fs.LV = true
			f.LVM = true
		case strings.HasPrefix(d, "/dev/") && !strings.HasPrefix(d, "/dev/md") && !strings.HasPrefix(d, "/dev/mapper/"):
			if n, err := x.g.Part_to_partnum(d); err == nil {
				fs.PartNum = n
				if disk, err := x.g.Part_to_dev(d); err == nil {
					fs.Disk = disk
					if parttype[disk] == "gpt" {
						if t, err := x.g.Part_get_gpt_type(disk, n); err == nil {
							fs.GPTType = strings.ToUpper(t)
						}
					}
				}
			}
		}
		f.Filesystems = append(f.Filesystems, fs)
	}
	return nil
}

// filesystem returns the facts of an appliance device.
func (f *Facts) filesystem(dev string) (Filesystem, bool) {
	for _, fs := range f.Filesystems {
		if fs.Device == dev {
			return fs, true
		}
	}
	return Filesystem{}, false
}

var reByPathSCSI = regexp.MustCompile(`-scsi-([0-9]+):([0-9]+):([0-9]+):([0-9]+)-part[0-9]+$`)

// mapSpec maps a device name from the guest's fstab, crypttab or kernel command line to an
// appliance device. fsType ("" or "auto" for any) is checked against the candidate. guessed is
// true when the mapping rests on the partition number and type rather than an identifier.
func (f *Facts) mapSpec(spec, fsType string) (dev string, guessed bool, ok bool) {
	spec = strings.Trim(spec, `"'`)
	typeOK := func(fs Filesystem) bool {
		return fsType == "" || fsType == "auto" || fsType == "none" && fs.Type == "swap" ||
			fs.Type == fsType || fsType == "swap" && fs.Type == "swap" ||
			strings.HasPrefix(fsType, "ext") && strings.HasPrefix(fs.Type, "ext")
	}
	if kind, val := conf.TagKind(spec); kind != "" {
		for _, fs := range f.Filesystems {
			var have string
			switch kind {
			case "UUID":
				have = fs.UUID
			case "LABEL":
				have = fs.Label
			case "PARTUUID":
				have = fs.PartUUID
			case "PARTLABEL":
				have = fs.PartLabel
			}
			if have != "" && (strings.EqualFold(have, val) && kind != "LABEL" || have == val) {
				return fs.Device, false, true
			}
		}
		return "", false, false
	}
	// LVM: /dev/VG/LV and /dev/mapper/VG-LV (a "-" inside a name is written "--").
	if name, ok := strings.CutPrefix(spec, "/dev/mapper/"); ok {
		if vg, lv, ok := splitDMName(name); ok {
			spec = "/dev/" + vg + "/" + lv
		}
	}
	for _, fs := range f.Filesystems {
		if fs.LV && fs.Device == spec {
			return fs.Device, false, true
		}
	}
	n := conf.PartitionNumber(spec)
	if n == 0 {
		return "", false, false
	}
	// Names by bus position: the same disk index when the disk exists and the type fits.
	if idx := conf.DiskIndex(spec); idx >= 0 {
		if idx < len(f.Disks) {
			want := f.Disks[idx].Device + strconv.Itoa(n)
			if fs, ok := f.filesystem(want); ok && typeOK(fs) {
				return want, len(f.Disks) > 1, true
			}
		}
		return "", false, false
	}
	// by-path on the first SCSI controller: target T is the T-th disk (VMware numbers disks
	// scsi0:T), checked by type.
	if m := reByPathSCSI.FindStringSubmatch(spec); m != nil && strings.HasPrefix(spec, "/dev/disk/by-path/") {
		t, _ := strconv.Atoi(m[3])
		if t < len(f.Disks) {
			want := f.Disks[t].Device + strconv.Itoa(n)
			if fs, ok := f.filesystem(want); ok && typeOK(fs) {
				return want, len(f.Disks) > 1, true
			}
		}
	}
	// Last resort: the only partition with that number and a fitting type.
	var cands []string
	for _, fs := range f.Filesystems {
		if fs.PartNum == n && typeOK(fs) {
			cands = append(cands, fs.Device)
		}
	}
	if len(cands) == 1 {
		return cands[0], true, true
	}
	return "", false, false
}

// splitDMName splits a device-mapper name "vg-lv" where literal dashes are doubled.
func splitDMName(name string) (vg, lv string, ok bool) {
	for i := 0; i < len(name); i++ {
		if name[i] != '-' {
			continue
		}
		if i+1 < len(name) && name[i+1] == '-' {
			i++
			continue
		}
		return strings.ReplaceAll(name[:i], "--", "-"), strings.ReplaceAll(name[i+1:], "--", "-"), i > 0 && i+1 < len(name)
	}
	return "", "", false
}

// skipMountTypes are fstab types never mounted for inspection.
var skipMountTypes = map[string]bool{"swap": true, "none": true, "proc": true, "sysfs": true,
	"tmpfs": true, "devpts": true, "devtmpfs": true, "nfs": true, "nfs4": true, "cifs": true,
	"smbfs": true, "iso9660": true, "udf": true, "auto": false, "bind": true, "fuse": true,
	"securityfs": true, "debugfs": true, "cgroup": true, "cgroup2": true, "efivarfs": true}

// mountOptions returns the options to pass for an fstab entry: its btrfs subvolume if any,
// plus ro, or noatime when read-write (reading a file must not write its inode: a second,
// idempotent Apply writes nothing to the overlay).
func mountOptions(fstabOpts string, rw bool) string {
	var o []string
	if !rw {
		o = append(o, "ro")
	} else {
		o = append(o, "noatime")
	}
	for _, opt := range strings.Split(fstabOpts, ",") {
		if strings.HasPrefix(opt, "subvol=") || strings.HasPrefix(opt, "subvolid=") {
			o = append(o, opt)
		}
	}
	return strings.Join(o, ",")
}

// mountAll mounts the guest filesystems listed in mounts, in order.
func mountAll(x guest, mounts []Mount, rw bool) error {
	for _, m := range mounts {
		if err := mountOne(x, m, rw); err != nil {
			x.g.Umount_all()
			return err
		}
	}
	return nil
}

func mountOne(x guest, m Mount, rw bool) error {
	opts := mountOptions(m.Options, rw)
	if err := gerr(x.g.Mount_options(opts, m.Device, m.MountPoint)); err != nil {
		return fmt.Errorf("linux: mount %s on %s (%s): %w: %v", m.Device, m.MountPoint, opts, ErrMount, err)
	}
	return nil
}

// mountGuest mounts the root read-only, reads its fstab, maps each entry and mounts the local
// filesystems below the root (parents first). It fills f.Mounts, f.Fstab and f.Crypttab.
func mountGuest(x guest, f *Facts) error {
	root := Mount{Device: f.OS.Root, MountPoint: "/"}
	if err := mountOne(x, root, false); err != nil {
		return err
	}
	f.Mounts = []Mount{root}
	text, found, err := x.readFile("/etc/fstab")
	if err != nil {
		return fmt.Errorf("linux: inspect: %w", err)
	}
	if !found {
		f.finding("fstab-missing", SeverityWarn, "/etc/fstab does not exist")
	}
	for _, e := range conf.ParseFstab(text) {
		te := TabEntry{File: "/etc/fstab", Line: e.Line, Spec: e.Spec, MountPoint: e.MountPoint, Type: e.Type, Options: e.Options}
		if !skipMountTypes[e.Type] && !strings.HasPrefix(e.Spec, "//") && !strings.Contains(e.Spec, ":/") || e.Type == "swap" {
			te.Device, te.Guessed, _ = f.mapSpec(e.Spec, e.Type)
		}
		te.Unstable, te.Reason = unstable(e.Spec)
		if te.Device != "" {
			if fs, ok := f.filesystem(te.Device); ok {
				te.Stable = fs.StableSpec()
				if fs.LV {
					te.Stable = fs.Device
				}
			}
		}
		if e.MountPoint == "/" && te.Device == "" {
			te.Device = f.OS.Root
		}
		f.Fstab = append(f.Fstab, te)
	}
	// Mount the rest, shallowest first.
	var subs []TabEntry
	for _, e := range f.Fstab {
		if e.MountPoint != "/" && strings.HasPrefix(e.MountPoint, "/") && e.Device != "" && !skipMountTypes[e.Type] {
			subs = append(subs, e)
		}
	}
	sort.SliceStable(subs, func(i, j int) bool {
		return strings.Count(path.Clean(subs[i].MountPoint), "/") < strings.Count(path.Clean(subs[j].MountPoint), "/")
	})
	for _, e := range subs {
		if e.Device == f.OS.Root && !strings.Contains(e.Options, "subvol") {
			continue
		}
		if !x.isDir(e.MountPoint) {
			f.finding("mountpoint-missing", SeverityWarn, fmt.Sprintf("fstab line %d: mount point %s does not exist in the guest; %s not mounted", e.Line+1, e.MountPoint, e.Spec))
			continue
		}
		m := Mount{Device: e.Device, MountPoint: e.MountPoint, Options: e.Options}
		if err := mountOne(x, m, false); err != nil {
			sev := SeverityWarn
			if e.MountPoint == "/boot" || e.MountPoint == "/usr" {
				return err
			}
			f.finding("mount-failed", sev, err.Error())
			continue
		}
		f.Mounts = append(f.Mounts, m)
	}
	for _, e := range f.Fstab {
		if e.Device == "" && !skipMountTypes[e.Type] && e.Type != "" && !strings.Contains(e.Options, "noauto") {
			f.finding("fstab-unmapped", SeverityWarn, fmt.Sprintf("fstab line %d: %s (%s) matches no filesystem on the disks", e.Line+1, e.Spec, e.MountPoint))
		}
	}
	// crypttab: name device keyfile options.
	if text, found, err := x.readFile("/etc/crypttab"); err == nil && found {
		for _, e := range conf.ParseTab(text) {
			if len(e.Fields) < 2 {
				continue
			}
			te := TabEntry{File: "/etc/crypttab", Line: e.Line, MountPoint: e.Fields[0], Spec: e.Fields[1], Options: e.Field(3)}
			te.Unstable, te.Reason = unstable(te.Spec)
			if dev, guessed, ok := f.mapSpec(te.Spec, ""); ok {
				te.Device, te.Guessed = dev, guessed
				if bl, err := x.g.Blkid(dev); err == nil && bl["UUID"] != "" {
					te.Stable = "UUID=" + bl["UUID"]
				}
			}
			f.Crypttab = append(f.Crypttab, te)
		}
	}
	return nil
}

func (f *Facts) finding(id, sev, msg string) {
	f.Findings = append(f.Findings, Finding{ID: id, Severity: sev, Message: msg})
}
