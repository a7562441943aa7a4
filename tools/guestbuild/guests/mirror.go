package guests

import (
	"bufio"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// DefaultMirror is used when the host's apt configuration names no Debian mirror for a release.
const DefaultMirror = "http://deb.debian.org/debian"

// HostMirror returns the Debian mirror the host's apt uses for release (e.g. "bookworm"), read
// from /etc/apt/sources.list and /etc/apt/sources.list.d (one-line .list and deb822 .sources).
// The environment variable H2KVM_DEBIAN_MIRROR overrides it.
func HostMirror(release string) string {
	if m := os.Getenv("H2KVM_DEBIAN_MIRROR"); m != "" {
		return m
	}
	files := []string{"/etc/apt/sources.list"}
	for _, pat := range []string{"/etc/apt/sources.list.d/*.list", "/etc/apt/sources.list.d/*.sources"} {
		m, _ := filepath.Glob(pat)
		files = append(files, m...)
	}
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		var m string
		if strings.HasSuffix(f, ".sources") {
			m = mirrorFromDeb822(fh, release)
		} else {
			m = mirrorFromList(fh, release)
		}
		fh.Close()
		if m != "" {
			return m
		}
	}
	return DefaultMirror
}

// suitable reports whether an apt entry serves release's main archive (not security, not a
// third-party repository that happens to reuse the suite name).
func suitable(uri string, suites []string, components []string, release string) bool {
	if !strings.HasPrefix(uri, "http://") && !strings.HasPrefix(uri, "https://") && !strings.HasPrefix(uri, "file:") {
		return false
	}
	if strings.Contains(uri, "security") || !strings.Contains(uri, "debian") {
		return false
	}
	hasSuite, hasMain := false, false
	for _, s := range suites {
		hasSuite = hasSuite || s == release
	}
	for _, c := range components {
		hasMain = hasMain || c == "main"
	}
	return hasSuite && hasMain
}

// mirrorFromList parses one-line style: "deb [opts] URI SUITE COMPONENT...".
func mirrorFromList(r io.Reader, release string) string {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) < 4 || f[0] != "deb" {
			continue
		}
		f = f[1:]
		if strings.HasPrefix(f[0], "[") {
			for len(f) > 0 && !strings.HasSuffix(f[0], "]") {
				f = f[1:]
			}
			if len(f) == 0 {
				continue
			}
			f = f[1:]
		}
		if len(f) < 3 {
			continue
		}
		if suitable(f[0], f[1:2], f[2:], release) {
			return strings.TrimRight(f[0], "/")
		}
	}
	return ""
}

// mirrorFromDeb822 parses deb822 style: stanzas of "Key: value" separated by blank lines.
func mirrorFromDeb822(r io.Reader, release string) string {
	sc := bufio.NewScanner(r)
	fields := map[string]string{}
	check := func() string {
		defer clear(fields)
		if !strings.Contains(" "+fields["types"]+" ", " deb ") {
			return ""
		}
		if strings.EqualFold(strings.TrimSpace(fields["enabled"]), "no") {
			return ""
		}
		suites := strings.Fields(fields["suites"])
		comps := strings.Fields(fields["components"])
		for _, uri := range strings.Fields(fields["uris"]) {
			if suitable(uri, suites, comps, release) {
				return strings.TrimRight(uri, "/")
			}
		}
		return ""
	}
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			if m := check(); m != "" {
				return m
			}
			continue
		}
		if strings.HasPrefix(line, "#") || strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t") {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if ok {
			fields[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
		}
	}
	return check()
}
