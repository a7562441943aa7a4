// Package secretenv keeps credentials out of child processes. h2kvm takes its credentials from
// environment variables (H2KVM_VSPHERE_PASSWORD, H2KVM_SSH_PASSWORD_FILE, …), and a child
// process (qemu-img, virsh, virt-xml-validate, libguestfs and the qemu it starts) inherits the
// environment unless told otherwise: these must never see them.
//
// Two layers use this package: the command line removes the secret variables from its own
// environment once it has read them (source.HideSecrets), which covers children started by
// libraries (libguestfs); and each exec.Cmd h2kvm builds sets Env to Environ(), which covers a
// library user that keeps them in its environment.
package secretenv

import (
	"os"
	"strings"
)

// Prefix is the prefix of h2kvm's environment variables.
const Prefix = "H2KVM_"

// IsSecret reports whether the environment variable name holds a credential or names a file
// that holds one: an H2KVM_ name with PASSWORD, TOKEN, SECRET or COOKIE in it, or ending in
// _KEY (a private key file). Matching is by pattern so that a variable added later is covered
// without a list to update.
func IsSecret(name string) bool {
	n := strings.ToUpper(name)
	if !strings.HasPrefix(n, Prefix) {
		return false
	}
	for _, w := range []string{"PASSWORD", "TOKEN", "SECRET", "COOKIE"} {
		if strings.Contains(n, w) {
			return true
		}
	}
	return strings.HasSuffix(n, "_KEY") || strings.HasSuffix(n, "_KEY_FILE")
}

// Scrub returns the KEY=VALUE entries of env without the secret ones, in order. env is not
// modified.
func Scrub(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if !IsSecret(k) {
			out = append(out, kv)
		}
	}
	return out
}

// Environ is the environment for a child process: os.Environ() without the secret variables.
// Every exec.Cmd of h2kvm sets Env to it (a nil Env would inherit everything).
func Environ() []string { return Scrub(os.Environ()) }
