package vsphere

import (
	"fmt"
	"net/url"
	"path"
	"strings"
)

// Location is a parsed vsphere:// location.
type Location struct {
	Host     string // host[:port]
	User     string // from the URL; "" when absent
	DC       string // datacenter inventory path without the leading slash ("" when absent)
	HasVM    bool   // the path holds a "vm" element: Path is relative to DC's vm folder
	Path     string // VM or folder path below the vm folder (or below the root when !HasVM)
	MoRef    string // ?moref= or a last element like vm-42
	Snapshot string // ?snapshot=
}

// ParseLocation parses a vsphere:// location (see the package doc).
func ParseLocation(s string) (*Location, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("vsphere: %v: %w", err, ErrBadURL)
	}
	if u.Scheme != "vsphere" || u.Host == "" {
		return nil, fmt.Errorf("vsphere: %q is not vsphere://[user@]host/DC/vm/NAME: %w", redact(u), ErrBadURL)
	}
	if _, set := u.User.Password(); set {
		return nil, fmt.Errorf("vsphere: %s: a password in the URL is not allowed; pass it through H2KVM_VSPHERE_PASSWORD or a file: %w", redact(u), ErrBadURL)
	}
	l := &Location{Host: u.Host}
	if u.User != nil {
		l.User = u.User.Username()
	}
	q := u.Query()
	l.MoRef = q.Get("moref")
	l.Snapshot = q.Get("snapshot")
	for k := range q {
		if k != "moref" && k != "snapshot" {
			return nil, fmt.Errorf("vsphere: %s: unknown parameter %q (moref, snapshot): %w", redact(u), k, ErrBadURL)
		}
	}
	p := strings.Trim(path.Clean("/"+u.Path), "/")
	var els []string
	if p != "" {
		els = strings.Split(p, "/")
	}
	for i, e := range els {
		if e == "vm" && i > 0 {
			l.DC, l.HasVM, l.Path = strings.Join(els[:i], "/"), true, strings.Join(els[i+1:], "/")
			break
		}
	}
	if !l.HasVM {
		l.Path = p
	}
	if l.MoRef == "" && l.Path != "" {
		last := l.Path[strings.LastIndex(l.Path, "/")+1:]
		if isVMMoRef(last) {
			l.MoRef = last
		}
	}
	return l, nil
}

func isVMMoRef(s string) bool {
	rest, ok := strings.CutPrefix(s, "vm-")
	if !ok || rest == "" {
		return false
	}
	for _, c := range rest {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// String is the location without credentials (the user name stays). It parses back to l.
func (l *Location) String() string {
	u := url.URL{Scheme: "vsphere", Host: l.Host}
	if l.User != "" {
		u.User = url.User(l.User)
	}
	switch {
	case l.HasVM:
		u.Path = "/" + path.Join(l.DC, "vm", l.Path)
	default:
		u.Path = "/" + l.Path
	}
	q := url.Values{}
	if last := l.Path[strings.LastIndex(l.Path, "/")+1:]; l.MoRef != "" && (l.MoRef != last || !isVMMoRef(last)) {
		q.Set("moref", l.MoRef) // not implied by the path: String must keep it
	}
	if l.Snapshot != "" {
		q.Set("snapshot", l.Snapshot)
	}
	u.RawQuery = q.Encode()
	return u.String()
}

func redact(u *url.URL) string {
	c := *u
	if c.User != nil {
		c.User = url.User(c.User.Username())
	}
	return c.String()
}
