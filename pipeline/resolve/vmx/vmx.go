package vmx

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding/htmlindex"
)

// MaxSize bounds the size of a .vmx file.
const MaxSize = 4 << 20

// File is a parsed .vmx: entries by lower-cased key.
type File struct {
	Name    string
	entries map[string]string
	keys    []string // lower-cased, in file order
}

// Parse reads a .vmx file. name is used in errors.
func Parse(r io.Reader, name string) (*File, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("vmx: %s: %w", name, err)
	}
	if len(data) > MaxSize {
		return nil, fmt.Errorf("vmx: %s: larger than %d bytes: %w", name, MaxSize, ErrInvalid)
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	f := &File{Name: name, entries: make(map[string]string)}
	raw := make(map[string][]byte)
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), MaxSize)
	for line := 1; sc.Scan(); line++ {
		t := bytes.TrimSpace(sc.Bytes())
		if len(t) == 0 || t[0] == '#' {
			continue
		}
		eq := bytes.IndexByte(t, '=')
		if eq <= 0 {
			return nil, fmt.Errorf("vmx: %s line %d: %q is not key = value: %w", name, line, clip(t), ErrInvalid)
		}
		key := strings.ToLower(string(bytes.TrimSpace(t[:eq])))
		if strings.ContainsAny(key, " \t\"") {
			return nil, fmt.Errorf("vmx: %s line %d: bad key %q: %w", name, line, clip(t[:eq]), ErrInvalid)
		}
		val, err := unquote(bytes.TrimSpace(t[eq+1:]))
		if err != nil {
			return nil, fmt.Errorf("vmx: %s line %d: %s: %v: %w", name, line, key, err, ErrInvalid)
		}
		if _, seen := raw[key]; !seen {
			f.keys = append(f.keys, key)
		}
		raw[key] = val // VMware keeps the last value of a repeated key
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("vmx: %s: %v: %w", name, err, ErrInvalid)
	}
	enc := "utf-8"
	if e, ok := raw[".encoding"]; ok && len(e) > 0 {
		enc = string(e)
	}
	decode := func(b []byte) (string, error) { return string(b), nil }
	switch strings.ToLower(enc) {
	case "utf-8", "utf8":
	default:
		e, err := htmlindex.Get(enc)
		if err != nil {
			return nil, fmt.Errorf("vmx: %s: .encoding %q not supported: %w", name, enc, ErrInvalid)
		}
		d := e.NewDecoder()
		decode = func(b []byte) (string, error) {
			out, err := d.Bytes(b)
			return string(out), err
		}
	}
	for _, k := range f.keys {
		v, err := decode(raw[k])
		if err != nil {
			return nil, fmt.Errorf("vmx: %s: %s: not %s text: %w", name, k, enc, ErrInvalid)
		}
		if !utf8.ValidString(v) {
			v = strings.ToValidUTF8(v, "\uFFFD")
		}
		f.entries[k] = v
	}
	return f, nil
}

// unquote takes a quoted or bare value and undoes |XX escapes.
func unquote(v []byte) ([]byte, error) {
	if len(v) > 0 && v[0] == '"' {
		end := bytes.IndexByte(v[1:], '"')
		if end < 0 {
			return nil, fmt.Errorf("value has no closing quote")
		}
		rest := bytes.TrimSpace(v[end+2:])
		if len(rest) > 0 && rest[0] != '#' {
			return nil, fmt.Errorf("text %q after the closing quote", clip(rest))
		}
		v = v[1 : end+1]
	} else if i := bytes.IndexByte(v, '#'); i >= 0 {
		v = bytes.TrimSpace(v[:i])
	}
	if bytes.IndexByte(v, '|') < 0 {
		return v, nil
	}
	out := make([]byte, 0, len(v))
	for i := 0; i < len(v); i++ {
		if v[i] != '|' {
			out = append(out, v[i])
			continue
		}
		if i+2 >= len(v) {
			return nil, fmt.Errorf("escape |%s cut short", v[i+1:])
		}
		b, err := strconv.ParseUint(string(v[i+1:i+3]), 16, 8)
		if err != nil {
			return nil, fmt.Errorf("escape |%s is not |XX hex", v[i+1:i+3])
		}
		out = append(out, byte(b))
		i += 2
	}
	return out, nil
}

func clip(b []byte) string {
	if len(b) > 60 {
		return string(b[:60]) + "…"
	}
	return string(b)
}

// Get returns the value of key (case-insensitive).
func (f *File) Get(key string) (string, bool) {
	v, ok := f.entries[strings.ToLower(key)]
	return v, ok
}

// Keys returns the lower-cased keys in file order.
func (f *File) Keys() []string { return append([]string(nil), f.keys...) }

// Bool reads a VMware boolean ("TRUE", "true", "1", …); absent is def.
func (f *File) Bool(key string, def bool) bool {
	v, ok := f.Get(key)
	if !ok {
		return def
	}
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "true", "yes", "1", "on":
		return true
	}
	return false
}

// sortKeys orders keys for deterministic iteration.
func sortKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
