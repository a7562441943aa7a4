package host

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Tool names an external program h2kvm runs, and why.
type Tool struct {
	Name     string `json:"name"`     // program name looked up in PATH, then /usr/sbin and /sbin
	Purpose  string `json:"purpose"`  // what h2kvm uses it for, shown by `h2kvm doctor`
	Required bool   `json:"required"` // false: only some features or tests need it
}

// RequiredTools are the programs the pipeline, the boot test and the test suite run. The order is
// the order `h2kvm doctor` prints them in.
var RequiredTools = []Tool{
	{"qemu-img", "convert the flattened disk to qcow2/raw; reference reader in tests", true},
	{"qemu-system-x86_64", "boot test; KVM probe; libguestfs appliance", true},
	{"nbdkit", "NBD peer server and fault injection in tests", true},
	{"nbdinfo", "independent NBD client in tests", true},
	{"nbdcopy", "independent NBD copier in tests and benchmarks", true},
	{"guestfish", "libguestfs (guest inspection and fixing); test guest builder", true},
	{"libvirtd", "boot test through libvirt", true},
	{"virsh", "boot test through libvirt", true},
	{"virt-xml-validate", "validate the generated domain XML", true},
	{"fusermount3", "FUSE front end (mount, unmount)", true},
	{"debootstrap", "build the Debian test guest", true},
	{"virt-v2v", "peer converter the results are compared against", true},
}

// ToolStatus is what Tools found out about one Tool.
type ToolStatus struct {
	Tool
	Found   bool   `json:"found"`
	Path    string `json:"path,omitempty"`
	Version string `json:"version,omitempty"` // e.g. "7.2.22"; empty if it could not be read
	Banner  string `json:"banner,omitempty"`  // the first line of `NAME --version`
	Error   string `json:"error,omitempty"`   // why Found is false or Version is empty
}

// versionTimeout bounds each `--version` run: some tools (libvirtd) are slow to start on a
// loaded host, but none needs seconds to print a version.
const versionTimeout = 10 * time.Second

// Tools reports every tool in RequiredTools, in that order. Versions are read concurrently.
func Tools(ctx context.Context) []ToolStatus {
	out := make([]ToolStatus, len(RequiredTools))
	var wg sync.WaitGroup
	for i, t := range RequiredTools {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = toolStatus(ctx, t)
		}()
	}
	wg.Wait()
	return out
}

// Missing returns the names of required tools that were not found.
func Missing(ts []ToolStatus) []string {
	var names []string
	for _, t := range ts {
		if t.Required && !t.Found {
			names = append(names, t.Name)
		}
	}
	return names
}

func toolStatus(ctx context.Context, t Tool) ToolStatus {
	st := ToolStatus{Tool: t}
	path, err := lookTool(t.Name)
	if err != nil {
		st.Error = err.Error()
		return st
	}
	st.Found, st.Path = true, path
	ctx, cancel := context.WithTimeout(ctx, versionTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, "--version")
	cmd.WaitDelay = time.Second
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	runErr := cmd.Run()
	st.Banner = firstLine(buf.String())
	// libvirtd and virt-xml-validate print the path they were run by; the name says it better.
	if rest, ok := strings.CutPrefix(st.Banner, path+" "); ok {
		st.Banner = t.Name + " " + rest
	}
	st.Version = versionRE.FindString(st.Banner)
	if st.Version == "" {
		if runErr != nil {
			st.Error = fmt.Sprintf("%s --version: %v", t.Name, runErr)
		} else {
			st.Error = fmt.Sprintf("%s --version: no version number in %q", t.Name, st.Banner)
		}
	}
	return st
}

var versionRE = regexp.MustCompile(`[0-9]+\.[0-9]+(\.[0-9]+)*`)

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}

// sbinDirs are searched after PATH: Debian puts libvirtd and debootstrap in /usr/sbin, which is
// not in an ordinary user's PATH.
var sbinDirs = []string{"/usr/local/sbin", "/usr/sbin", "/sbin"}

// lookTool finds an executable by name in PATH, then in sbinDirs.
func lookTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range sbinDirs {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("host: %s: not found in PATH or %s", name, strings.Join(sbinDirs, ", "))
}

// FUSEStatus says whether the FUSE front end can work on this host.
type FUSEStatus struct {
	Usable bool   `json:"usable"`
	Detail string `json:"detail"`
}

// FUSE reports whether /dev/fuse can be opened read-write and fusermount3 is installed. It does
// not mount anything.
func FUSE() FUSEStatus {
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		switch {
		case errors.Is(err, os.ErrNotExist):
			return FUSEStatus{Detail: "/dev/fuse is absent (load the fuse module, or pass --device /dev/fuse to the container)"}
		default:
			return FUSEStatus{Detail: fmt.Sprintf("/dev/fuse cannot be opened: %v", err)}
		}
	}
	f.Close()
	p, err := lookTool("fusermount3")
	if err != nil {
		return FUSEStatus{Detail: "/dev/fuse opens, but fusermount3 is not installed (package fuse3)"}
	}
	return FUSEStatus{Usable: true, Detail: "/dev/fuse opens read-write; " + p}
}
