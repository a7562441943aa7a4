package conf

import (
	"strings"
)

// Kernel command lines: words separated by ASCII whitespace (space, \t, \n, \v, \f, \r, as
// the kernel's own parser counts it), "key=value" or "flag". Every function here splits a line
// with cmdlineWords, so that a value one of them finds is one the others see and rewrite.
// Double quotes are not given their kernel meaning (a quoted value with spaces in it is
// several words); the keys h2kvm reads and rewrites (root, resume, console) never hold spaces.

// isCmdlineSpace reports whether c separates kernel command line words.
func isCmdlineSpace(c byte) bool {
	return c == ' ' || c >= '\t' && c <= '\r'
}

// cmdlineWords returns the [start, end) byte offsets of the words of cmdline, in order.
func cmdlineWords(cmdline string) [][2]int {
	var out [][2]int
	for i := 0; i < len(cmdline); {
		if isCmdlineSpace(cmdline[i]) {
			i++
			continue
		}
		j := i
		for j < len(cmdline) && !isCmdlineSpace(cmdline[j]) {
			j++
		}
		out = append(out, [2]int{i, j})
		i = j
	}
	return out
}

// CmdlineGet returns the value of the last key=value word for key.
func CmdlineGet(cmdline, key string) (string, bool) {
	v := CmdlineValues(cmdline, key)
	if len(v) == 0 {
		return "", false
	}
	return v[len(v)-1], true
}

// CmdlineValues returns all values of key, in order.
func CmdlineValues(cmdline, key string) []string {
	var out []string
	for _, w := range cmdlineWords(cmdline) {
		if v, ok := strings.CutPrefix(cmdline[w[0]:w[1]], key+"="); ok {
			out = append(out, v)
		}
	}
	return out
}

// CmdlineReplaceValues rewrites key=value words whose value is a key of repl, keeping the
// spacing of the rest of the line. Every value CmdlineValues finds for key is rewritten when
// repl maps it to a new value that is a single word.
func CmdlineReplaceValues(cmdline, key string, repl map[string]string) (string, bool) {
	changed := false
	var b strings.Builder
	last := 0
	for _, w := range cmdlineWords(cmdline) {
		v, ok := strings.CutPrefix(cmdline[w[0]:w[1]], key+"=")
		if !ok {
			continue
		}
		nv, hit := repl[v]
		if !hit || nv == "" || nv == v || strings.IndexFunc(nv, isCmdlineSpaceRune) >= 0 {
			continue
		}
		b.WriteString(cmdline[last:w[0]])
		b.WriteString(key + "=" + nv)
		last = w[1]
		changed = true
	}
	if !changed {
		return cmdline, false
	}
	b.WriteString(cmdline[last:])
	return b.String(), true
}

func isCmdlineSpaceRune(r rune) bool { return r < 0x80 && isCmdlineSpace(byte(r)) }

// SerialConsoleArgs are the words EnsureSerialConsole adds.
var SerialConsoleArgs = []string{"console=tty0", "console=ttyS0,115200"}

// HasSerialConsole reports whether a command line sends the console to the first serial port.
func HasSerialConsole(cmdline string) bool {
	for _, v := range CmdlineValues(cmdline, "console") {
		if v == "ttyS0" || strings.HasPrefix(v, "ttyS0,") {
			return true
		}
	}
	return false
}

// EnsureSerialConsole appends console=tty0 console=ttyS0,115200 unless the line already has a
// ttyS0 console. console=tty0 is only added when the line has no console= at all, so that an
// existing choice of the screen console is kept and ttyS0 (the last console=, which becomes
// /dev/console) gets the boot messages and a getty.
func EnsureSerialConsole(cmdline string) (string, bool) {
	if HasSerialConsole(cmdline) {
		return cmdline, false
	}
	add := SerialConsoleArgs
	if len(CmdlineValues(cmdline, "console")) > 0 {
		add = add[1:]
	}
	out := strings.TrimRightFunc(cmdline, isCmdlineSpaceRune)
	if out != "" {
		out += " "
	}
	return out + strings.Join(add, " "), true
}

// KernelLine is a kernel-loading command in a grub.cfg, or the options of a BLS entry.
type KernelLine struct {
	// Line is the 0-based line number.
	Line int `json:"line"`
	// Command is linux, linux16, linuxefi or "options" (BLS).
	Command string `json:"command"`
	// Kernel is the kernel path ("" for BLS options).
	Kernel string `json:"kernel,omitempty"`
	// Args is the rest of the line.
	Args string `json:"args"`
}

// GrubKernelLines returns the linux/linux16/linuxefi commands of a grub.cfg.
func GrubKernelLines(text string) []KernelLine {
	var out []KernelLine
	for i, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "linux", "linux16", "linuxefi":
			t := strings.TrimSpace(line)
			rest := strings.TrimSpace(t[len(f[0]):])
			rest = strings.TrimSpace(rest[len(f[1]):])
			out = append(out, KernelLine{Line: i, Command: f[0], Kernel: f[1], Args: rest})
		}
	}
	return out
}

// BLSOptions returns the "options" line of a Boot Loader Specification entry.
func BLSOptions(text string) []KernelLine {
	var out []KernelLine
	for i, line := range strings.Split(text, "\n") {
		t := strings.TrimSpace(line)
		if v, ok := strings.CutPrefix(t, "options"); ok && (v == "" || v[0] == ' ' || v[0] == '\t') {
			out = append(out, KernelLine{Line: i, Command: "options", Args: strings.TrimSpace(v)})
		}
	}
	return out
}

// ReplaceBLSOptions rewrites key=value words on the options lines of a BLS entry.
func ReplaceBLSOptions(text, key string, repl map[string]string) (string, bool) {
	lines := strings.Split(text, "\n")
	changed := false
	for _, kl := range BLSOptions(text) {
		nv, ch := CmdlineReplaceValues(lines[kl.Line], key, repl)
		if ch {
			lines[kl.Line] = nv
			changed = true
		}
	}
	return strings.Join(lines, "\n"), changed
}
