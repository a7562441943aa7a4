package source

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/h2kvm/h2kvm/vfs/source/datastore"
)

// TestPlaintextFromEnv: H2KVM_ALLOW_PLAINTEXT is read by ConfigFromEnv and is what lets Open
// use an http:// datastore URL; without it the refusal names the variable.
func TestPlaintextFromEnv(t *testing.T) {
	loc := "http://127.0.0.1:1/folder/a.vmdk?dcPath=DC&dsName=ds"
	cfg := Config{Retry: fast, VSphereUser: "u", VSpherePassword: "hunter2"}
	_, _, err := Open(context.Background(), loc, cfg)
	if !errors.Is(err, datastore.ErrPlaintext) || !strings.Contains(err.Error(), EnvAllowPlaintext) {
		t.Fatalf("want a refusal naming %s, got %v", EnvAllowPlaintext, err)
	}
	t.Setenv(EnvAllowPlaintext, "1")
	if cfg, err = ConfigFromEnv(); err != nil || !cfg.AllowPlaintext {
		t.Fatalf("ConfigFromEnv: %+v, %v", cfg, err)
	}
	cfg.Retry = fast
	cfg.VSphereUser, cfg.VSpherePassword = "u", "hunter2"
	if _, _, err = Open(context.Background(), loc, cfg); errors.Is(err, datastore.ErrPlaintext) {
		t.Fatalf("allowed, still refused: %v", err)
	}
	t.Setenv(EnvAllowPlaintext, "yes")
	if _, err := ConfigFromEnv(); err == nil || !strings.Contains(err.Error(), EnvAllowPlaintext) {
		t.Fatalf("bad value: %v", err)
	}
}
