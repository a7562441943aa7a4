package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/h2kvm/h2kvm/tools/guestbuild/guests"
)

func TestList(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run([]string{"--list", "--cache", t.TempDir()}, &out, &errb); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != len(guests.Names()) {
		t.Fatalf("list:\n%s", out.String())
	}
	for i, n := range guests.Names() {
		if !strings.HasPrefix(lines[i], n+"\t") || !strings.HasSuffix(lines[i], "\tnot built") {
			t.Fatalf("line %q", lines[i])
		}
	}
}

func TestUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run(nil, &out, &errb); err == nil || !strings.Contains(err.Error(), "--guest") {
		t.Fatalf("no --guest: %v", err)
	}
	if err := run([]string{"--guest", "nope", "--cache", t.TempDir()}, &out, &errb); err == nil || !strings.Contains(err.Error(), "unknown guest") {
		t.Fatalf("unknown guest: %v", err)
	}
}
