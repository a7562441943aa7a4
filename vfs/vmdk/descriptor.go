package vmdk

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/japanese"
	"golang.org/x/text/encoding/simplifiedchinese"
	"golang.org/x/text/encoding/traditionalchinese"

	"github.com/h2kvm/h2kvm/vfs"
)

// Limits on descriptors, chosen far above anything VMware writes and far below what would hurt.
const (
	// MaxDescriptorSize is the largest descriptor accepted, in bytes (qemu reads at most 1 MiB).
	MaxDescriptorSize = 1 << 20
	// MaxCapacity is the largest virtual size accepted for a link or an extent, in bytes
	// (64 TiB; VMware's own limit is 62 TiB).
	MaxCapacity = 64 << 40
	// maxExtentLines bounds the extent section (a 62 TiB 2GbMax disk has about 31,744 pieces).
	maxExtentLines = 65536
)

// NoParentCID is the parentCID of a link without a parent.
const NoParentCID uint32 = 0xffffffff

// Access is the access mode of an extent line.
type Access string

// Access modes.
const (
	AccessRW       Access = "RW"
	AccessRDONLY   Access = "RDONLY"
	AccessNOACCESS Access = "NOACCESS"
)

// ExtentLine is one line of a descriptor's extent section:
//
//	ACCESS SIZE TYPE ["FILENAME" [OFFSET [more...]]]
type ExtentLine struct {
	Access  Access
	Sectors int64  // extent length in 512-byte sectors
	Type    string // upper case: FLAT, VMFS, SPARSE, VMFSSPARSE, SESPARSE, ZERO, VMFSRDM, VMFSRAW
	File    string // as written, decoded to UTF-8; empty for ZERO
	Offset  int64  // sectors into File where the extent starts (FLAT)
	Extra   []string
}

// Descriptor is a parsed VMDK text descriptor. Keys are case-insensitive; Header and DDB hold
// every key=value line with lower-cased keys (DDB keys keep their "ddb." prefix).
type Descriptor struct {
	Version            int
	Encoding           string // as written; "" means UTF-8
	CID                uint32
	ParentCID          uint32
	CreateType         string
	ParentFileNameHint string
	Extents            []ExtentLine
	Header             map[string]string
	DDB                map[string]string
}

// Get returns a ddb value by name with or without the "ddb." prefix, case-insensitively.
func (d *Descriptor) Get(key string) string {
	key = strings.ToLower(key)
	if !strings.HasPrefix(key, "ddb.") {
		key = "ddb." + key
	}
	return d.DDB[key]
}

// Sectors returns the sum of the extent sizes.
func (d *Descriptor) Sectors() int64 {
	var n int64
	for _, e := range d.Extents {
		n += e.Sectors
	}
	return n
}

// looksLikeDescriptor applies qemu's detection rule: the first line that is neither blank nor a
// comment is version=1, 2 or 3.
func looksLikeDescriptor(b []byte) bool {
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		s := strings.TrimSpace(string(line))
		if s == "" || s[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(s, "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(k), "version") {
			return false
		}
		v = strings.Trim(strings.TrimSpace(v), `"`)
		return v == "1" || v == "2" || v == "3"
	}
	return false
}

// ParseDescriptor parses the text of a descriptor (standalone or embedded; text after the
// first NUL byte is ignored). Errors wrap vfs.ErrCorrupt, or vfs.ErrUnsupported for an unknown
// encoding; they name the line but not the file (callers add it).
func ParseDescriptor(b []byte) (*Descriptor, error) {
	if len(b) > MaxDescriptorSize {
		return nil, fmt.Errorf("descriptor of %d bytes exceeds %d: %w", len(b), MaxDescriptorSize, vfs.ErrCorrupt)
	}
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	if !looksLikeDescriptor(b) {
		return nil, fmt.Errorf("not a VMDK descriptor (first line is not version=1|2|3): %w", vfs.ErrCorrupt)
	}
	enc := findEncoding(b)
	text, err := decodeText(b, enc)
	if err != nil {
		return nil, err
	}
	d := &Descriptor{
		Encoding:  enc,
		ParentCID: NoParentCID,
		Header:    map[string]string{},
		DDB:       map[string]string{},
	}
	for n, line := range strings.Split(text, "\n") {
		lineNo := n + 1
		s := strings.TrimSpace(line)
		if s == "" || s[0] == '#' {
			continue
		}
		if acc, rest, ok := cutAccess(s); ok {
			if len(d.Extents) >= maxExtentLines {
				return nil, fmt.Errorf("descriptor line %d: more than %d extents: %w", lineNo, maxExtentLines, vfs.ErrCorrupt)
			}
			e, err := parseExtentLine(acc, rest)
			if err != nil {
				return nil, fmt.Errorf("descriptor line %d: %q: %w", lineNo, s, err)
			}
			d.Extents = append(d.Extents, e)
			continue
		}
		k, v, ok := strings.Cut(s, "=")
		if !ok {
			return nil, fmt.Errorf("descriptor line %d: %q is neither key=value nor an extent: %w", lineNo, s, vfs.ErrCorrupt)
		}
		k = strings.ToLower(strings.TrimSpace(k))
		v = unquote(strings.TrimSpace(v))
		if k == "" || strings.ContainsAny(k, " \t\"") {
			return nil, fmt.Errorf("descriptor line %d: bad key in %q: %w", lineNo, s, vfs.ErrCorrupt)
		}
		if strings.HasPrefix(k, "ddb.") {
			d.DDB[k] = v
			continue
		}
		d.Header[k] = v
		switch k {
		case "version":
			d.Version, err = strconv.Atoi(v)
			if err != nil || d.Version < 1 || d.Version > 3 {
				return nil, fmt.Errorf("descriptor line %d: version %q not 1, 2 or 3: %w", lineNo, v, vfs.ErrUnsupported)
			}
		case "cid":
			d.CID, err = parseCID(v) // absent: 0, which only weakens the chain check
		case "parentcid":
			d.ParentCID, err = parseCID(v)
		case "createtype":
			d.CreateType = v
		case "parentfilenamehint":
			d.ParentFileNameHint = v
		}
		if err != nil {
			return nil, fmt.Errorf("descriptor line %d: %s: %w", lineNo, k, err)
		}
	}
	var total int64
	for i, e := range d.Extents {
		total += e.Sectors
		if total > MaxCapacity/512 {
			return nil, fmt.Errorf("descriptor extent %d: total size %d sectors exceeds %d bytes: %w", i, total, int64(MaxCapacity), vfs.ErrCorrupt)
		}
	}
	return d, nil
}

func parseCID(v string) (uint32, error) {
	if len(v) == 0 || len(v) > 8 {
		return 0, fmt.Errorf("%q is not 8 hex digits: %w", v, vfs.ErrCorrupt)
	}
	c, err := strconv.ParseUint(v, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("%q is not 8 hex digits: %w", v, vfs.ErrCorrupt)
	}
	return uint32(c), nil
}

func unquote(v string) string {
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		return v[1 : len(v)-1]
	}
	return v
}

// cutAccess recognises an extent line by its first word.
func cutAccess(s string) (Access, string, bool) {
	i := strings.IndexAny(s, " \t")
	if i < 0 {
		return "", "", false
	}
	switch w := strings.ToUpper(s[:i]); w {
	case "RW", "RDONLY", "NOACCESS":
		return Access(w), strings.TrimSpace(s[i:]), true
	}
	return "", "", false
}

func parseExtentLine(acc Access, rest string) (ExtentLine, error) {
	e := ExtentLine{Access: acc}
	f := strings.Fields(rest)
	if len(f) < 2 {
		return e, fmt.Errorf("extent line needs SIZE and TYPE: %w", vfs.ErrCorrupt)
	}
	n, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil || n < 0 || n > MaxCapacity/512 {
		return e, fmt.Errorf("extent size %q out of range: %w", f[0], vfs.ErrCorrupt)
	}
	e.Sectors = n
	e.Type = strings.ToUpper(f[1])
	// Everything after TYPE: an optional quoted file name (may contain spaces), then words.
	after := strings.TrimSpace(rest)
	after = strings.TrimSpace(after[len(f[0]):])
	after = strings.TrimSpace(after[len(f[1]):])
	if after != "" {
		if after[0] != '"' {
			return e, fmt.Errorf("extent file name must be double-quoted: %w", vfs.ErrCorrupt)
		}
		end := strings.IndexByte(after[1:], '"')
		if end < 0 {
			return e, fmt.Errorf("unterminated file name: %w", vfs.ErrCorrupt)
		}
		e.File = after[1 : 1+end]
		words := strings.Fields(after[2+end:])
		if len(words) > 0 {
			off, err := strconv.ParseInt(words[0], 10, 64)
			if err != nil || off < 0 || off > MaxCapacity/512 {
				return e, fmt.Errorf("extent offset %q out of range: %w", words[0], vfs.ErrCorrupt)
			}
			e.Offset = off
			e.Extra = words[1:]
		}
	}
	switch e.Type {
	case "ZERO":
		if e.File != "" {
			return e, fmt.Errorf("ZERO extent with a file name: %w", vfs.ErrCorrupt)
		}
	case "FLAT", "VMFS", "SPARSE", "VMFSSPARSE", "SESPARSE", "VMFSRDM", "VMFSRAW":
		if e.File == "" {
			return e, fmt.Errorf("%s extent without a file name: %w", e.Type, vfs.ErrCorrupt)
		}
	default:
		return e, fmt.Errorf("unknown extent type %q: %w", e.Type, vfs.ErrUnsupported)
	}
	if e.Offset != 0 && e.Type != "FLAT" && e.Type != "VMFSRDM" && e.Type != "VMFSRAW" {
		return e, fmt.Errorf("offset %d on a %s extent: %w", e.Offset, e.Type, vfs.ErrCorrupt)
	}
	return e, nil
}

// findEncoding returns the value of the encoding key, looking at ASCII bytes only (every
// supported encoding keeps ASCII, newline and '"' intact outside multi-byte characters).
func findEncoding(b []byte) string {
	for _, line := range bytes.Split(b, []byte("\n")) {
		k, v, ok := bytes.Cut(line, []byte("="))
		if ok && strings.EqualFold(strings.TrimSpace(string(k)), "encoding") {
			return unquote(strings.TrimSpace(string(v)))
		}
	}
	return ""
}

func lookupEncoding(name string) (encoding.Encoding, error) {
	switch strings.ToLower(strings.ReplaceAll(name, "_", "-")) {
	case "", "utf-8", "utf8":
		return nil, nil
	case "windows-1252", "cp1252":
		return charmap.Windows1252, nil
	case "iso-8859-1", "latin1":
		return charmap.ISO8859_1, nil
	case "gbk", "cp936", "gb2312":
		return simplifiedchinese.GBK, nil
	case "big5", "cp950":
		return traditionalchinese.Big5, nil
	case "shift-jis", "sjis", "cp932":
		return japanese.ShiftJIS, nil
	}
	return nil, fmt.Errorf("descriptor encoding %q: %w", name, vfs.ErrUnsupported)
}

// decodeText turns the descriptor into UTF-8. Invalid UTF-8 in a descriptor that claims UTF-8
// (or claims nothing) is an error: guessing would yield a file name that does not exist.
func decodeText(b []byte, enc string) (string, error) {
	e, err := lookupEncoding(enc)
	if err != nil {
		return "", err
	}
	if e == nil {
		if !utf8.Valid(b) {
			return "", fmt.Errorf("descriptor is not valid UTF-8 and names no other encoding: %w", vfs.ErrCorrupt)
		}
		return string(b), nil
	}
	out, err := e.NewDecoder().Bytes(b)
	if err != nil {
		return "", fmt.Errorf("descriptor: decoding %s: %v: %w", enc, err, vfs.ErrCorrupt)
	}
	return string(out), nil
}
