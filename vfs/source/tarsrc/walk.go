package tarsrc

import (
	"bytes"
	"context"
	"fmt"
	"path"
	"strconv"
	"strings"

	"github.com/h2kvm/h2kvm/vfs"
)

const blockSize = 512

// MaxMetaSize bounds the data of a GNU long-name or PAX header that Walk reads.
const MaxMetaSize = 1 << 20

// MaxMembers bounds the number of headers Walk reads.
const MaxMembers = 100000

// Member is one regular file of an archive.
type Member struct {
	// Name is the member's cleaned name ("disk1.vmdk", "sub/x.vmdk"), never absolute, never
	// with "..".
	Name string
	// Header is the offset of the member's first header block (its long-name or PAX header
	// when it has one); Offset is the offset of its data in the archive.
	Header, Offset int64
	// Size is the size the header declares; Available is how much of it the archive holds
	// (less than Size when the archive was cut short).
	Size, Available int64
}

// Truncated reports whether the archive ends inside the member's data.
func (m Member) Truncated() bool { return m.Available < m.Size }

// Index lists the regular files of an archive in archive order.
type Index struct {
	Archive string // the archive's name, for messages
	Members []Member
	byName  map[string]int
}

// Lookup finds a member by name (cleaned the same way member names are).
func (ix *Index) Lookup(name string) (Member, bool) {
	i, ok := ix.byName[path.Clean(strings.TrimPrefix(name, "./"))]
	if !ok {
		return Member{}, false
	}
	return ix.Members[i], true
}

// Names returns the member names in archive order.
func (ix *Index) Names() []string {
	out := make([]string, len(ix.Members))
	for i, m := range ix.Members {
		out[i] = m.Name
	}
	return out
}

// Walk reads the headers of the tar archive src and indexes its regular files. It reads no
// member data except long names and PAX records. See the package doc for what it refuses.
func Walk(ctx context.Context, src vfs.Source) (*Index, error) {
	ix := &Index{Archive: src.Name(), byName: make(map[string]int)}
	size := src.Size()
	var (
		hdr      [blockSize]byte
		longName string // from a GNU 'L' header, for the next member
		pax      map[string]string
		first    int64 = -1 // header offset of the pending long-name/PAX headers
	)
	fail := func(off int64, kind error, format string, args ...any) error {
		return fmt.Errorf("tarsrc: %s: header at offset %d: %s: %w", src.Name(), off, fmt.Sprintf(format, args...), kind)
	}
	for off, count := int64(0), 0; ; count++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if count > MaxMembers {
			return nil, fail(off, vfs.ErrUnsupported, "more than %d headers", MaxMembers)
		}
		if off+blockSize > size {
			if off == size && len(ix.Members) > 0 && first < 0 {
				// No end-of-archive blocks: tolerated (some writers omit them).
				break
			}
			return nil, fail(off, vfs.ErrTruncated, "archive ends at %d inside a header", size)
		}
		if err := vfs.ReadFull(ctx, src, hdr[:], off); err != nil {
			return nil, fmt.Errorf("tarsrc: %s: header at offset %d: %w", src.Name(), off, err)
		}
		if isZero(hdr[:]) {
			if first >= 0 {
				return nil, fail(off, vfs.ErrCorrupt, "end of archive after a long-name or PAX header")
			}
			break
		}
		if err := checksum(&hdr); err != nil {
			return nil, fail(off, vfs.ErrCorrupt, "%v", err)
		}
		msize, err := parseNumeric(hdr[124:136])
		if err != nil {
			return nil, fail(off, vfs.ErrCorrupt, "size field: %v", err)
		}
		typ := hdr[156]
		data := off + blockSize
		if first < 0 {
			first = off
		}
		if typ != 'L' && typ != 'K' && typ != 'x' && typ != 'g' {
			if v, ok := pax["size"]; ok {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil || n < 0 {
					return nil, fail(off, vfs.ErrCorrupt, "PAX size %q", v)
				}
				msize = n
			}
		}
		if msize > 1<<50 { // guards the offset arithmetic below against overflow
			return nil, fail(off, vfs.ErrCorrupt, "member size %d is not plausible", msize)
		}
		next := data + (msize+blockSize-1)/blockSize*blockSize
		name := headerName(&hdr)
		if longName != "" {
			name = longName
		}
		if v, ok := pax["path"]; ok {
			name = v
		}
		switch typ {
		case 'L', 'K', 'x', 'g':
			if msize > MaxMetaSize {
				return nil, fail(off, vfs.ErrUnsupported, "%c header of %d bytes (at most %d)", typ, msize, MaxMetaSize)
			}
			if data+msize > size {
				return nil, fail(off, vfs.ErrTruncated, "archive ends at %d inside a %c header", size, typ)
			}
			buf := make([]byte, msize)
			if err := vfs.ReadFull(ctx, src, buf, data); err != nil {
				return nil, fmt.Errorf("tarsrc: %s: header at offset %d: %w", src.Name(), off, err)
			}
			switch typ {
			case 'L':
				longName = cstring(buf)
			case 'x':
				p, err := parsePAX(buf)
				if err != nil {
					return nil, fail(off, vfs.ErrCorrupt, "PAX records: %v", err)
				}
				pax = p
			case 'g':
				// Global headers carry defaults (mtime, charset) that do not change where a
				// member's bytes are; "path" and "size" in them are not honoured.
				if _, err := parsePAX(buf); err != nil {
					return nil, fail(off, vfs.ErrCorrupt, "PAX global records: %v", err)
				}
				first = -1
			}
			// 'K' (long link name): the link it belongs to is refused below.
			off = next
			continue
		case '0', 0, '7':
			clean, err := cleanName(name)
			if err != nil {
				return nil, fail(first, ErrUnsafeMember, "member %q: %v", name, err)
			}
			if _, dup := ix.byName[clean]; dup {
				return nil, fail(first, ErrUnsafeMember, "member %q appears twice", clean)
			}
			if typ == 0 && strings.HasSuffix(name, "/") {
				// Old tars mark directories by a trailing slash.
				break
			}
			avail := max(0, min(msize, size-data))
			ix.byName[clean] = len(ix.Members)
			ix.Members = append(ix.Members, Member{Name: clean, Header: first, Offset: data, Size: msize, Available: avail})
		case '5':
			if _, err := cleanName(name); err != nil && path.Clean(name) != "." {
				return nil, fail(first, ErrUnsafeMember, "directory %q: %v", name, err)
			}
		case '1', '2':
			return nil, fail(first, ErrUnsafeMember, "member %q is a link", name)
		case '3', '4', '6':
			return nil, fail(first, ErrUnsafeMember, "member %q is a device or FIFO", name)
		case 'S':
			return nil, fail(first, ErrUnsafeMember, "member %q is a GNU sparse file", name)
		default:
			return nil, fail(first, ErrUnsafeMember, "member %q has unknown type %q", name, typ)
		}
		longName, pax, first = "", nil, -1
		if next >= size {
			// The archive ends inside (or right after) this member's data: nothing follows.
			break
		}
		off = next
	}
	return ix, nil
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// checksum verifies the header checksum: the sum of all bytes with the checksum field read as
// spaces, unsigned (POSIX) or signed (old Sun tars).
func checksum(h *[blockSize]byte) error {
	want, err := parseOctal(h[148:156])
	if err != nil {
		return fmt.Errorf("checksum field: %v", err)
	}
	var u, s int64
	for i, c := range h {
		if i >= 148 && i < 156 {
			c = ' '
		}
		u += int64(c)
		s += int64(int8(c))
	}
	if want != u && want != s {
		return fmt.Errorf("header checksum %d, computed %d (not a tar archive?)", want, u)
	}
	return nil
}

// headerName joins the ustar prefix and name fields.
func headerName(h *[blockSize]byte) string {
	name := cstring(h[0:100])
	if bytes.Equal(h[257:263], []byte("ustar\x00")) {
		if p := cstring(h[345:500]); p != "" {
			name = p + "/" + name
		}
	}
	return name
}

func cstring(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// parseNumeric reads an octal field or a GNU base-256 one (high bit of the first byte set).
func parseNumeric(b []byte) (int64, error) {
	if len(b) > 0 && b[0]&0x80 != 0 {
		if b[0]&0x40 != 0 {
			return 0, fmt.Errorf("negative base-256 number")
		}
		var n int64
		for i, c := range b {
			if i == 0 {
				c &= 0x7f
			}
			if n > (1<<62)>>8 {
				return 0, fmt.Errorf("base-256 number too large")
			}
			n = n<<8 | int64(c)
		}
		return n, nil
	}
	return parseOctal(b)
}

func parseOctal(b []byte) (int64, error) {
	s := strings.Trim(string(b), " \x00")
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 8, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not an octal number", s)
	}
	return n, nil
}

// parsePAX reads "LEN key=value\n" records.
func parsePAX(b []byte) (map[string]string, error) {
	out := make(map[string]string)
	for len(b) > 0 {
		sp := bytes.IndexByte(b, ' ')
		if sp <= 0 {
			return nil, fmt.Errorf("record without length")
		}
		n, err := strconv.Atoi(string(b[:sp]))
		if err != nil || n <= sp+1 || n > len(b) {
			return nil, fmt.Errorf("bad record length %q", b[:sp])
		}
		rec := b[sp+1 : n]
		if rec[len(rec)-1] != '\n' {
			return nil, fmt.Errorf("record not ended by a newline")
		}
		rec = rec[:len(rec)-1]
		eq := bytes.IndexByte(rec, '=')
		if eq <= 0 {
			return nil, fmt.Errorf("record without key")
		}
		out[string(rec[:eq])] = string(rec[eq+1:])
		b = b[n:]
	}
	return out, nil
}

// cleanName refuses names a reader must not trust and returns the cleaned relative name.
func cleanName(name string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("empty name")
	}
	if strings.ContainsRune(name, 0) {
		return "", fmt.Errorf("NUL in name")
	}
	if strings.HasPrefix(name, "/") || strings.HasPrefix(name, "\\") || (len(name) >= 2 && name[1] == ':') {
		return "", fmt.Errorf("absolute name")
	}
	for _, el := range strings.FieldsFunc(name, func(r rune) bool { return r == '/' || r == '\\' }) {
		if el == ".." {
			return "", fmt.Errorf("name leaves the archive (..)")
		}
	}
	c := path.Clean(strings.TrimPrefix(name, "./"))
	if c == "." || c == "" {
		return "", fmt.Errorf("empty name")
	}
	if strings.HasPrefix(c, "/") || strings.HasPrefix(c, "\\") {
		return "", fmt.Errorf("absolute name") // ".//etc/x": absolute once "./" is removed
	}
	return c, nil
}
