package conf

import (
	"strings"
)

// Shell-style variable files: /etc/default/grub, /etc/selinux/config, ifcfg-*, os-release,
// /etc/mkinitcpio.conf, /etc/initramfs-tools/conf.d/*. Only plain assignments are understood
// (KEY=value, KEY="value", KEY='value', optionally after "export "); anything else is kept.

// assignment is a parsed KEY=value line.
type assignment struct {
	line  int
	key   string
	value string // unquoted
}

// parseAssignment parses one line; ok is false for anything but a plain assignment.
func parseAssignment(line string) (key, value string, ok bool) {
	t := strings.TrimSpace(line)
	t = strings.TrimPrefix(t, "export ")
	t = strings.TrimLeft(t, " \t")
	eq := strings.IndexByte(t, '=')
	if eq <= 0 {
		return "", "", false
	}
	key = t[:eq]
	for i, c := range []byte(key) {
		if !(c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || i > 0 && c >= '0' && c <= '9') {
			return "", "", false
		}
	}
	v, ok := unquote(t[eq+1:])
	if !ok {
		return "", "", false
	}
	return key, v, true
}

// unquote reads a shell word made of unquoted, '...' and "..." parts, up to whitespace or a
// comment. It returns ok == false for an unterminated quote.
func unquote(s string) (string, bool) {
	var b strings.Builder
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == ';':
			return b.String(), true
		case c == '#' && i == 0:
			return "", true
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return "", false
			}
			b.WriteString(s[i+1 : i+1+j])
			i += j + 2
		case c == '"':
			i++
			closed := false
			for i < len(s) {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\"\\$`", s[i+1]) >= 0 {
					b.WriteByte(s[i+1])
					i += 2
					continue
				}
				if s[i] == '"' {
					closed = true
					i++
					break
				}
				b.WriteByte(s[i])
				i++
			}
			if !closed {
				return "", false
			}
		case c == '\\' && i+1 < len(s):
			b.WriteByte(s[i+1])
			i += 2
		default:
			b.WriteByte(c)
			i++
		}
	}
	return b.String(), true
}

func assignments(text string) []assignment {
	var out []assignment
	for i, line := range strings.Split(text, "\n") {
		if k, v, ok := parseAssignment(line); ok {
			out = append(out, assignment{line: i, key: k, value: v})
		}
	}
	return out
}

// ShellVar returns the value of the last plain assignment to key, unquoted.
func ShellVar(text, key string) (string, bool) {
	val, found := "", false
	for _, a := range assignments(text) {
		if a.key == key {
			val, found = a.value, true
		}
	}
	return val, found
}

// ShellVars returns every plain assignment, last one winning.
func ShellVars(text string) map[string]string {
	m := map[string]string{}
	for _, a := range assignments(text) {
		m[a.key] = a.value
	}
	return m
}

// Quote returns value as a double-quoted shell word.
func Quote(value string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "`", "\\`")
	// "$" is left alone on purpose: GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX ..." must keep working.
	return `"` + r.Replace(value) + `"`
}

// SetShellVar makes key's effective value equal value: the last assignment line is replaced by
// KEY="value" (an "export " prefix is kept), or the line is appended when there is none.
func SetShellVar(text, key, value string) (string, bool) {
	if cur, ok := ShellVar(text, key); ok && cur == value {
		return text, false
	}
	lines := strings.Split(text, "\n")
	last := -1
	for _, a := range assignments(text) {
		if a.key == key {
			last = a.line
		}
	}
	if last >= 0 {
		prefix := ""
		if strings.HasPrefix(strings.TrimSpace(lines[last]), "export ") {
			prefix = "export "
		}
		lines[last] = prefix + key + "=" + Quote(value)
		return strings.Join(lines, "\n"), true
	}
	out := text
	if out != "" && !strings.HasSuffix(out, "\n") {
		out += "\n"
	}
	return out + key + "=" + Quote(value) + "\n", true
}

// CommentOutShellVar comments out every assignment of key whose value satisfies match, adding
// note after the original text. It returns whether anything changed.
func CommentOutShellVar(text, key string, match func(value string) bool, note string) (string, bool) {
	lines := strings.Split(text, "\n")
	changed := false
	for _, a := range assignments(text) {
		if a.key == key && match(a.value) {
			lines[a.line] = "#" + strings.TrimSpace(lines[a.line]) + "  # " + note
			changed = true
		}
	}
	return strings.Join(lines, "\n"), changed
}

// DeleteShellVar removes every assignment line of key.
func DeleteShellVar(text, key string) (string, bool) {
	as := assignments(text)
	drop := map[int]bool{}
	for _, a := range as {
		if a.key == key {
			drop[a.line] = true
		}
	}
	if len(drop) == 0 {
		return text, false
	}
	var out []string
	for i, l := range strings.Split(text, "\n") {
		if !drop[i] {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n"), true
}

// IsTrue reports whether a shell-style boolean value means true.
func IsTrue(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "true", "yes", "y", "1", "on":
		return true
	}
	return false
}
