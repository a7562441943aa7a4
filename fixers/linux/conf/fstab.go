package conf

import (
	"regexp"
	"strconv"
	"strings"
)

// TabEntry is one entry line of a whitespace-separated table file (/etc/fstab, /etc/crypttab).
type TabEntry struct {
	// Line is the 0-based line number in the file.
	Line int `json:"line"`
	// Fields are the whitespace-separated fields, octal escapes (\040) left as written.
	Fields []string `json:"fields"`
}

// Field returns field i or "" when the line has fewer fields.
func (e TabEntry) Field(i int) string {
	if i < len(e.Fields) {
		return e.Fields[i]
	}
	return ""
}

// FstabEntry is one /etc/fstab entry.
type FstabEntry struct {
	Line       int    `json:"line"`
	Spec       string `json:"spec"`
	MountPoint string `json:"mount_point"`
	Type       string `json:"type"`
	Options    string `json:"options"`
}

// ParseTab returns the entry lines of a table file: lines that are neither blank nor comments.
func ParseTab(text string) []TabEntry {
	var out []TabEntry
	for i, line := range strings.Split(text, "\n") {
		t := strings.TrimFunc(line, isTabSpace)
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		out = append(out, TabEntry{Line: i, Fields: strings.FieldsFunc(t, isTabSpace)})
	}
	return out
}

// ParseFstab returns the entries of an fstab file. Entries with fewer than two fields are
// skipped (mount(8) rejects them too). Octal escapes in the mount point are decoded.
func ParseFstab(text string) []FstabEntry {
	var out []FstabEntry
	for _, e := range ParseTab(text) {
		if len(e.Fields) < 2 {
			continue
		}
		out = append(out, FstabEntry{
			Line: e.Line, Spec: e.Fields[0], MountPoint: Unescape(e.Fields[1]),
			Type: e.Field(2), Options: e.Field(3),
		})
	}
	return out
}

// Unescape decodes the octal escapes (\040 for space, \011 tab, \012, \134) fstab uses.
func Unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) && isOctal(s[i+1:i+4]) {
			n, _ := strconv.ParseUint(s[i+1:i+4], 8, 8)
			b.WriteByte(byte(n))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(s string) bool {
	if len(s) != 3 {
		return false
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '7' {
			return false
		}
	}
	return s[0] <= '3'
}

// ReplaceField rewrites field index field (0-based) of the entry lines of a table file whose
// current value is a key of repl, preserving everything else on the line (indentation,
// separators, trailing comments). It returns the new text and whether anything changed.
func ReplaceField(text string, field int, repl map[string]string) (string, bool) {
	lines := strings.Split(text, "\n")
	changed := false
	for i, line := range lines {
		t := strings.TrimFunc(line, isTabSpace)
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		start, end, ok := fieldSpan(line, field)
		if !ok {
			continue
		}
		if nv, hit := repl[line[start:end]]; hit && nv != line[start:end] && nv != "" && strings.IndexFunc(nv, isTabSpace) < 0 {
			lines[i] = line[:start] + nv + line[end:]
			changed = true
		}
	}
	return strings.Join(lines, "\n"), changed
}

// isTabSpace is the field separator of table files: ASCII white space, as libmount's isspace.
func isTabSpace(r rune) bool {
	return r == ' ' || r == '\t' || r == '\r' || r == '\v' || r == '\f' || r == '\n'
}

// fieldSpan returns the byte span of whitespace-separated field n of line.
func fieldSpan(line string, n int) (int, int, bool) {
	i, f := 0, -1
	for i < len(line) {
		for i < len(line) && isTabSpace(rune(line[i])) {
			i++
		}
		if i >= len(line) {
			break
		}
		start := i
		for i < len(line) && !isTabSpace(rune(line[i])) {
			i++
		}
		f++
		if f == n {
			return start, i, true
		}
	}
	return 0, 0, false
}

var (
	reSDX   = regexp.MustCompile(`^/dev/(sd|hd|vd|xvd)[a-z]+[0-9]*$`)
	reNVMe  = regexp.MustCompile(`^/dev/nvme[0-9]+n[0-9]+(p[0-9]+)?$`)
	reCCISS = regexp.MustCompile(`^/dev/cciss/c[0-9]+d[0-9]+(p[0-9]+)?$`)
)

// Unstable reports whether a device name in fstab, crypttab or on a kernel command line depends
// on the virtual hardware (controller, bus position, disk order) and so will not survive a move
// from VMware to KVM, with the reason. Tag forms (UUID=, LABEL=, PARTUUID=, PARTLABEL=), their
// /dev/disk/by-uuid|by-label|by-partuuid|by-partlabel equivalents, LVM and device-mapper names,
// md arrays and pseudo filesystems are stable.
func Unstable(spec string) (bool, string) {
	s := strings.Trim(spec, `"'`)
	switch {
	case strings.HasPrefix(s, "/dev/disk/by-path/"):
		return true, "names the PCI/SCSI path of the VMware controller"
	case strings.HasPrefix(s, "/dev/disk/by-id/"):
		return true, "names the disk by its controller-specific serial (changes with virtio)"
	case reSDX.MatchString(s), reNVMe.MatchString(s), reCCISS.MatchString(s):
		return true, "names the disk by bus type and probe order (virtio-blk disks are /dev/vdX)"
	}
	return false, ""
}

// TagKind splits a tag-form device name: "UUID=x" → ("UUID", "x"). /dev/disk/by-uuid/x and the
// like map to the same tags. Anything else returns ("", "").
func TagKind(spec string) (kind, value string) {
	s := strings.Trim(spec, `"'`)
	for _, k := range []string{"UUID", "LABEL", "PARTUUID", "PARTLABEL"} {
		if v, ok := strings.CutPrefix(s, k+"="); ok {
			return k, strings.Trim(v, `"'`)
		}
		if v, ok := strings.CutPrefix(s, "/dev/disk/by-"+strings.ToLower(k)+"/"); ok {
			return k, UnescapeUdev(v)
		}
	}
	return "", ""
}

// UnescapeUdev decodes udev's \xNN escapes in /dev/disk/by-label names.
func UnescapeUdev(s string) string {
	if !strings.Contains(s, `\x`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) && s[i+1] == 'x' {
			if n, err := strconv.ParseUint(s[i+2:i+4], 16, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

var rePartSuffix = regexp.MustCompile(`(?:-part|p?)([0-9]+)$`)

// PartitionNumber returns the partition number a device name ends with ("/dev/sda2" → 2,
// ".../pci-0000:03:00.0-scsi-0:0:0:0-part1" → 1, "/dev/nvme0n1p3" → 3), or 0 for a whole disk.
func PartitionNumber(spec string) int {
	s := strings.Trim(spec, `"'`)
	if strings.HasPrefix(s, "/dev/disk/") {
		i := strings.LastIndex(s, "-part")
		if i < 0 {
			return 0
		}
		n, err := strconv.Atoi(s[i+5:])
		if err != nil || n <= 0 {
			return 0
		}
		return n
	}
	if reNVMe.MatchString(s) || reCCISS.MatchString(s) {
		i := strings.LastIndexByte(s, 'p')
		if i < 0 || strings.HasSuffix(s[:i+1], "/dev/") {
			return 0
		}
		n, _ := strconv.Atoi(s[i+1:])
		return n
	}
	if m := rePartSuffix.FindStringSubmatch(s); m != nil && reSDX.MatchString(s) {
		n, _ := strconv.Atoi(m[1])
		return n
	}
	return 0
}

// DiskIndex returns the 0-based disk index a /dev/sdX, /dev/hdX, /dev/vdX, /dev/xvdX or
// /dev/nvmeN name implies ("sdb1" → 1, "sdaa" → 26), or -1.
func DiskIndex(spec string) int {
	s := strings.Trim(spec, `"'`)
	if reNVMe.MatchString(s) {
		s = strings.TrimPrefix(s, "/dev/nvme")
		n, err := strconv.Atoi(s[:strings.IndexByte(s, 'n')])
		if err != nil {
			return -1
		}
		return n
	}
	if !reSDX.MatchString(s) {
		return -1
	}
	s = strings.TrimPrefix(s, "/dev/")
	for _, p := range []string{"xvd", "sd", "hd", "vd"} {
		if v, ok := strings.CutPrefix(s, p); ok {
			s = v
			break
		}
	}
	idx := 0
	for _, c := range []byte(s) {
		if c < 'a' || c > 'z' {
			break
		}
		idx = idx*26 + int(c-'a') + 1
	}
	return idx - 1
}
