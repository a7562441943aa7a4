package fixers

import (
	"fmt"
	"strings"
)

// Actions a Change records.
const (
	ActionModify = "modify" // a text file's content changed; Before and After hold it
	ActionCreate = "create" // a new file; After holds its content
	ActionDelete = "delete" // a file or symlink was removed; Before holds its content or target
	ActionRun    = "run"    // a guest command ran; File is the command line, After its output tail
	// ActionRegenerate: a generated binary file (an initramfs) was rebuilt; Before and After
	// describe it (size, digest) rather than hold it.
	ActionRegenerate = "regenerate"
)

// Change is one change made to a guest. Before and After, as recorded by Report.Add, have the
// values of secret settings (Wi-Fi PSKs, 802.1x and VPN passwords, ...) redacted.
type Change struct {
	// Fix is the ID of the planned fix that made the change.
	Fix string `json:"fix,omitempty"`
	// File is the guest path (or, for ActionRun, the command line).
	File   string `json:"file"`
	Action string `json:"action"`
	Before string `json:"before,omitempty"`
	After  string `json:"after,omitempty"`
	// Seconds is how long the guest command behind the change ran (ActionRun, ActionRegenerate,
	// and files a command rewrote); 0 for plain edits.
	Seconds float64 `json:"seconds,omitempty"`
}

// String is a one-line description: "modify /etc/fstab (fstab-stable-names)".
func (c Change) String() string {
	s := c.Action + " " + c.File
	if c.Fix != "" {
		s += " (" + c.Fix + ")"
	}
	if c.Seconds > 0 {
		s += fmt.Sprintf(" [%.1fs]", c.Seconds)
	}
	return s
}

// Report is what one run of fixes did.
type Report struct {
	Changes []Change `json:"changes"`
	// Warnings are problems that did not stop the run (a fix that could only be partly made).
	Warnings []string `json:"warnings,omitempty"`
	// Seconds is how long each fix took (checking included), by fix ID.
	Seconds map[string]float64 `json:"seconds,omitempty"`
}

// Empty reports whether the run changed nothing.
func (r *Report) Empty() bool { return r == nil || len(r.Changes) == 0 }

// Add records a change, its secrets redacted (RedactChange): a report and the job record it
// goes into may be read by more people than the guest's secrets are meant for.
func (r *Report) Add(c Change) { r.Changes = append(r.Changes, RedactChange(c)) }

// Warnf records a warning.
func (r *Report) Warnf(format string, args ...any) {
	r.Warnings = append(r.Warnings, fmt.Sprintf(format, args...))
}

// Summary lists the changes and warnings, one a line.
func (r *Report) Summary() string {
	if r == nil {
		return ""
	}
	var b strings.Builder
	for _, c := range r.Changes {
		b.WriteString(c.String())
		b.WriteByte('\n')
	}
	for _, w := range r.Warnings {
		b.WriteString("warning: " + w + "\n")
	}
	return b.String()
}
