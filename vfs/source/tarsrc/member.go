package tarsrc

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"hash"
	"io"
	"net/url"
	"strings"

	"github.com/h2kvm/h2kvm/vfs"
)

// Source is one member of an archive as a vfs.Source: reads are ranged reads of the archive.
type Source struct {
	// set once
	archive vfs.Source
	m       Member
	name    string
	own     bool // Close closes archive
}

var _ vfs.Source = (*Source)(nil)

// OpenMember returns member m of archive as a Source. When own is set, Close closes archive.
func OpenMember(archive vfs.Source, m Member, own bool) *Source {
	return &Source{archive: archive, m: m, name: Location(archive.Name(), m.Name), own: own}
}

// Member returns what the index knows about the member.
func (s *Source) Member() Member { return s.m }

// ReadAt reads from the member's data. Reads past what a cut archive holds fail with
// vfs.ErrTruncated naming the member, the offset and where the archive ends.
func (s *Source) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("tarsrc: %s: negative offset %d: %w", s.name, off, vfs.ErrOutOfRange)
	}
	if off >= s.m.Size {
		return 0, io.EOF
	}
	want := p
	var eof bool
	if rest := s.m.Size - off; int64(len(want)) > rest {
		want, eof = want[:rest], true
	}
	if off+int64(len(want)) > s.m.Available {
		return 0, fmt.Errorf("tarsrc: %s: %d bytes at offset %d: the archive ends after %d of the member's %d bytes: %w",
			s.name, len(want), off, s.m.Available, s.m.Size, vfs.ErrTruncated)
	}
	n, err := s.archive.ReadAt(ctx, want, s.m.Offset+off)
	if n == len(want) {
		if eof {
			return n, io.EOF
		}
		return n, nil
	}
	if err == nil || err == io.EOF {
		err = fmt.Errorf("tarsrc: %s: archive %s ended at %d while reading the member at %d: %w",
			s.name, s.archive.Name(), s.archive.Size(), off+int64(n), vfs.ErrTruncated)
	}
	return n, err
}

// Size is the member size its header declares.
func (s *Source) Size() int64 { return s.m.Size }

// Name is the member's location (see Location).
func (s *Source) Name() string { return s.name }

// Close closes the archive source when the member owns it.
func (s *Source) Close() error {
	if s.own {
		return s.archive.Close()
	}
	return nil
}

// Scheme prefixes member locations.
const Scheme = "ova:"

// Location names member of the archive at location archive: "ova:" + archive + "#" +
// url.PathEscape(member).
func Location(archive, member string) string {
	return Scheme + archive + "#" + url.PathEscape(member)
}

// IsLocation reports whether loc names an archive member.
func IsLocation(loc string) bool { return strings.HasPrefix(loc, Scheme) }

// Split takes a member location apart into the archive's location and the member name.
func Split(loc string) (archive, member string, err error) {
	if !IsLocation(loc) {
		return "", "", fmt.Errorf("tarsrc: %q is not an archive member location (%sARCHIVE#MEMBER)", loc, Scheme)
	}
	rest := loc[len(Scheme):]
	i := strings.LastIndexByte(rest, '#')
	if i <= 0 || i == len(rest)-1 {
		return "", "", fmt.Errorf("tarsrc: %q names no archive or no member (%sARCHIVE#MEMBER)", loc, Scheme)
	}
	m, err := url.PathUnescape(rest[i+1:])
	if err != nil {
		return "", "", fmt.Errorf("tarsrc: %q: bad member name escape: %v", loc, err)
	}
	return rest[:i], m, nil
}

// NewHash returns the hash of a manifest algorithm name (SHA1, SHA256 or SHA512, in any case),
// or nil for another name.
func NewHash(alg string) hash.Hash {
	switch strings.ToUpper(alg) {
	case "SHA1":
		return sha1.New()
	case "SHA256":
		return sha256.New()
	case "SHA512":
		return sha512.New()
	}
	return nil
}

// Digest reads s completely, in order, into h and returns the sum. It is how a member's
// manifest digest is checked; it costs a full read of the member.
func Digest(ctx context.Context, s vfs.Source, h hash.Hash) ([]byte, error) {
	buf := make([]byte, 1<<20)
	for off := int64(0); off < s.Size(); {
		n := int(min(int64(len(buf)), s.Size()-off))
		if err := vfs.ReadFull(ctx, s, buf[:n], off); err != nil {
			return nil, err
		}
		h.Write(buf[:n])
		off += int64(n)
	}
	return h.Sum(nil), nil
}
