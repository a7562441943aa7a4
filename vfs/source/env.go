package source

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/h2kvm/h2kvm/internal/secretenv"
	"github.com/h2kvm/h2kvm/vfs/source/datastore"
)

// Environment variables read by ConfigFromEnv. A *_FILE variable names a file holding the
// secret (one line; a trailing newline is removed) and wins over the plain variable.
const (
	EnvVSphereUser         = "H2KVM_VSPHERE_USER"
	EnvVSpherePassword     = "H2KVM_VSPHERE_PASSWORD"
	EnvVSpherePasswordFile = "H2KVM_VSPHERE_PASSWORD_FILE"
	EnvSSHUser             = "H2KVM_SSH_USER"
	EnvSSHPassword         = "H2KVM_SSH_PASSWORD"
	EnvSSHPasswordFile     = "H2KVM_SSH_PASSWORD_FILE"
	EnvSSHKey              = "H2KVM_SSH_KEY"         // path of a private key file
	EnvSSHKnownHosts       = "H2KVM_SSH_KNOWN_HOSTS" // default ~/.ssh/known_hosts
	EnvSSHInsecure         = "H2KVM_SSH_INSECURE"    // "1": accept any host key
	EnvTLSCAFile           = "H2KVM_TLS_CA_FILE"
	EnvTLSThumbprint       = "H2KVM_TLS_THUMBPRINT" // SHA-1 or SHA-256, comma-separated
	EnvTLSInsecure         = "H2KVM_TLS_INSECURE"   // "1": no certificate verification
	EnvRetries             = "H2KVM_SOURCE_RETRIES" // attempts per read
	EnvRetryTime           = "H2KVM_SOURCE_RETRY_TIME"
	EnvStallTimeout        = "H2KVM_SOURCE_TIMEOUT"
	EnvConns               = "H2KVM_SOURCE_CONNS"
	// EnvAllowPlaintext "1" allows http:// datastore URLs, which carry the vSphere password
	// and session cookie in clear (refused by default).
	EnvAllowPlaintext = datastore.EnvAllowPlaintext
	// EnvAllowOutsideDisks "1" lets a .vmx or an OVF name disks outside its folder.
	EnvAllowOutsideDisks = "H2KVM_ALLOW_OUTSIDE_DISKS"
)

// hidden holds the secret variables HideSecrets took out of the process environment.
var hidden struct {
	mu   sync.Mutex
	vars map[string]string
}

// HideSecrets moves the secret variables (secretenv.IsSecret: H2KVM_*PASSWORD*, *_KEY, …)
// out of the process environment, keeping their values for ConfigFromEnv, so that no child
// process inherits them: qemu-img, virsh, and the qemu that libguestfs starts, which h2kvm
// cannot give an environment of its own. The command line calls it once, before running a
// command; each call replaces what an earlier one kept with what is in the environment now.
func HideSecrets() {
	vars := map[string]string{}
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		if secretenv.IsSecret(k) {
			vars[k] = v
			os.Unsetenv(k)
		}
	}
	hidden.mu.Lock()
	hidden.vars = vars
	hidden.mu.Unlock()
}

// getenv is os.Getenv, falling back to a value HideSecrets kept.
func getenv(name string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	hidden.mu.Lock()
	defer hidden.mu.Unlock()
	return hidden.vars[name]
}

// ConfigFromEnv builds a Config from the environment variables above (and the secret ones
// HideSecrets took out of it). Malformed values are errors that name the variable (never its
// value when it is a secret).
func ConfigFromEnv() (Config, error) {
	var c Config
	var err error
	c.VSphereUser = getenv(EnvVSphereUser)
	c.SSHUser = getenv(EnvSSHUser)
	c.SSHKeyFile = getenv(EnvSSHKey)
	c.SSHKnownHosts = getenv(EnvSSHKnownHosts)
	c.TLS.CAFile = getenv(EnvTLSCAFile)
	if c.VSpherePassword, err = secret(EnvVSpherePassword, EnvVSpherePasswordFile); err != nil {
		return Config{}, err
	}
	if c.SSHPassword, err = secret(EnvSSHPassword, EnvSSHPasswordFile); err != nil {
		return Config{}, err
	}
	c.TLS.Thumbprints = strings.FieldsFunc(getenv(EnvTLSThumbprint), func(r rune) bool { return r == ',' || r == ' ' })
	if c.TLS.Insecure, err = flag(EnvTLSInsecure); err != nil {
		return Config{}, err
	}
	if c.SSHInsecureHosts, err = flag(EnvSSHInsecure); err != nil {
		return Config{}, err
	}
	if c.AllowPlaintext, err = flag(EnvAllowPlaintext); err != nil {
		return Config{}, err
	}
	if c.AllowOutsideDisks, err = flag(EnvAllowOutsideDisks); err != nil {
		return Config{}, err
	}
	if v := getenv(EnvRetries); v != "" {
		if c.Retry.Attempts, err = strconv.Atoi(v); err != nil || c.Retry.Attempts < 1 {
			return Config{}, fmt.Errorf("source: %s=%q: want a positive number", EnvRetries, v)
		}
	}
	if c.Retry.MaxElapsed, err = duration(EnvRetryTime); err != nil {
		return Config{}, err
	}
	if c.StallTimeout, err = duration(EnvStallTimeout); err != nil {
		return Config{}, err
	}
	if v := getenv(EnvConns); v != "" {
		if c.Conns, err = strconv.Atoi(v); err != nil || c.Conns < 1 {
			return Config{}, fmt.Errorf("source: %s=%q: want a positive number", EnvConns, v)
		}
	}
	return c, nil
}

func secret(env, fileEnv string) (Secret, error) {
	if f := getenv(fileEnv); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", fmt.Errorf("source: %s: %w", fileEnv, err)
		}
		return Secret(strings.TrimRight(string(b), "\r\n")), nil
	}
	return Secret(getenv(env)), nil
}

func flag(env string) (bool, error) {
	switch v := getenv(env); v {
	case "", "0", "false":
		return false, nil
	case "1", "true":
		return true, nil
	default:
		return false, fmt.Errorf("source: %s=%q: want 1 or 0", env, v)
	}
}

func duration(env string) (time.Duration, error) {
	v := getenv(env)
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("source: %s=%q: want a duration like 30s", env, v)
	}
	return d, nil
}
