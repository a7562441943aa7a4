package secretenv

import (
	"slices"
	"testing"
)

func TestScrub(t *testing.T) {
	env := []string{
		"PATH=/usr/bin", "H2KVM_VSPHERE_PASSWORD=p", "H2KVM_VSPHERE_PASSWORD_FILE=/f",
		"H2KVM_SSH_PASSWORD=s", "H2KVM_SSH_PASSWORD_FILE=/g", "H2KVM_SSH_KEY=/k", "h2kvm_api_token=t",
		"H2KVM_VSPHERE_USER=u", "H2KVM_LOG_LEVEL=debug", "LIBGUESTFS_BACKEND=direct", "MY_PASSWORD=x", "NOEQUALS",
	}
	want := []string{"PATH=/usr/bin", "H2KVM_VSPHERE_USER=u", "H2KVM_LOG_LEVEL=debug", "LIBGUESTFS_BACKEND=direct", "MY_PASSWORD=x", "NOEQUALS"}
	if got := Scrub(env); !slices.Equal(got, want) {
		t.Fatalf("Scrub = %q, want %q", got, want)
	}
	t.Setenv("H2KVM_VSPHERE_PASSWORD", "p")
	for _, kv := range Environ() {
		if kv == "H2KVM_VSPHERE_PASSWORD=p" {
			t.Fatal("Environ keeps the password")
		}
	}
}
