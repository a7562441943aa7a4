package source

import (
	"os"
	"testing"
)

// TestHideSecrets: the secret variables leave the process environment (so no child inherits
// them) and ConfigFromEnv still reads them; the others stay.
func TestHideSecrets(t *testing.T) {
	t.Setenv(EnvVSphereUser, "admin")
	t.Setenv(EnvVSpherePassword, "vs-secret")
	t.Setenv(EnvSSHPassword, "ssh-secret")
	t.Setenv(EnvSSHKey, "/keys/id")
	HideSecrets()
	t.Cleanup(HideSecrets) // forget the values kept (the variables are gone by then)
	for _, v := range []string{EnvVSpherePassword, EnvSSHPassword, EnvSSHKey} {
		if _, ok := os.LookupEnv(v); ok {
			t.Errorf("%s still in the environment", v)
		}
	}
	if os.Getenv(EnvVSphereUser) != "admin" {
		t.Errorf("%s hidden too", EnvVSphereUser)
	}
	c, err := ConfigFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if c.VSphereUser != "admin" || c.VSpherePassword != "vs-secret" || c.SSHPassword != "ssh-secret" || c.SSHKeyFile != "/keys/id" {
		t.Fatalf("config after HideSecrets: user %q, passwords set %v %v, key %q", c.VSphereUser, c.VSpherePassword != "", c.SSHPassword != "", c.SSHKeyFile)
	}
}
