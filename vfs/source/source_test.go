package source

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/h2kvm/h2kvm/internal/libnbd/nbdkittest"
	"github.com/h2kvm/h2kvm/vfs"
	"github.com/h2kvm/h2kvm/vfs/source/httpsrc"
	"github.com/h2kvm/h2kvm/vfs/source/httpsrc/httpsrctest"
	"github.com/h2kvm/h2kvm/vfs/source/nbdsrc"
	"github.com/h2kvm/h2kvm/vfs/source/retry"
)

var fast = retry.Policy{Attempts: 2, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}

// readThrough opens location, resolves rel next to it, and returns both files' bytes.
func readThrough(t *testing.T, location, rel string) (first, second []byte, o Opener) {
	t.Helper()
	ctx := context.Background()
	o, name, err := Open(ctx, location, Config{Retry: fast})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	read := func(name string) []byte {
		s, err := o.Open(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		b := make([]byte, s.Size())
		if err := vfs.ReadFull(ctx, s, b, 0); err != nil {
			t.Fatal(err)
		}
		return b
	}
	n2, err := o.Resolve(name, rel)
	if err != nil {
		t.Fatal(err)
	}
	return read(name), read(n2), o
}

func TestOpenKinds(t *testing.T) {
	dir := t.TempDir()
	a, b := []byte("descriptor bytes"), bytes.Repeat([]byte{7}, 70000)
	os.WriteFile(filepath.Join(dir, "a.vmdk"), a, 0o600)
	os.WriteFile(filepath.Join(dir, "a-flat.vmdk"), b, 0o600)

	t.Run("local", func(t *testing.T) {
		x, y, o := readThrough(t, filepath.Join(dir, "a.vmdk"), "a-flat.vmdk")
		if !bytes.Equal(x, a) || !bytes.Equal(y, b) {
			t.Fatal("bytes differ")
		}
		if _, err := o.Resolve(filepath.Join(dir, "a.vmdk"), "../../etc/passwd"); !errors.Is(err, vfs.ErrChain) {
			t.Fatalf("escape: %v", err)
		}
	})
	t.Run("http", func(t *testing.T) {
		srv := httpsrctest.New(map[string][]byte{"vm/a.vmdk": a, "vm/a-flat.vmdk": b})
		defer srv.Close()
		x, y, o := readThrough(t, srv.FileURL("vm/a.vmdk"), "a-flat.vmdk")
		if !bytes.Equal(x, a) || !bytes.Equal(y, b) {
			t.Fatal("bytes differ")
		}
		if _, ok := o.(*httpsrc.Opener); !ok {
			t.Fatalf("opener %T", o)
		}
		if st := o.Stats(); st.BytesFetched != int64(len(a)+len(b)) || srv.BytesServed() < st.BytesFetched {
			t.Fatalf("stats %+v, server sent %d", st, srv.BytesServed())
		}
	})
	t.Run("nbd", func(t *testing.T) {
		sock := nbdkittest.Start(t, "file", "dir="+dir)
		x, y, o := readThrough(t, "nbd+unix:///a.vmdk?socket="+sock, "a-flat.vmdk")
		if !bytes.Equal(x, a) || !bytes.Equal(y, b) {
			t.Fatal("bytes differ")
		}
		if _, ok := o.(*nbdsrc.Opener); !ok {
			t.Fatalf("opener %T", o)
		}
	})
}

func TestOpenRefusals(t *testing.T) {
	ctx := context.Background()
	for loc, want := range map[string]string{
		"https://u:hunter2@h/folder/a.vmdk?dsName=x": "password",
		"https://h/folder/a.vmdk?dcPath=DC&dsName=x": "user and password",
		"ssh://h/vmfs/volumes/ds/a.vmdk":             "credentials",
		"vsphere://vc/DC/vm/web":                     "names a VM",
		"gopher://h/x":                               "unknown scheme",
	} {
		_, _, err := Open(ctx, loc, Config{Retry: fast, SSHKnownHosts: os.DevNull})
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: got %v, want %q", loc, err, want)
		}
	}
}

func TestConfigFromEnv(t *testing.T) {
	pwFile := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pwFile, []byte("from-file\n"), 0o600)
	t.Setenv(EnvVSphereUser, "admin")
	t.Setenv(EnvVSpherePassword, "from-env")
	t.Setenv(EnvVSpherePasswordFile, pwFile)
	t.Setenv(EnvSSHPassword, "ssh-secret")
	t.Setenv(EnvTLSThumbprint, "AA:BB, CC")
	t.Setenv(EnvTLSInsecure, "1")
	t.Setenv(EnvRetries, "9")
	t.Setenv(EnvStallTimeout, "7s")
	c, err := ConfigFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if c.VSphereUser != "admin" || c.VSpherePassword != "from-file" || c.SSHPassword != "ssh-secret" ||
		len(c.TLS.Thumbprints) != 2 || !c.TLS.Insecure || c.Retry.Attempts != 9 || c.StallTimeout != 7*time.Second {
		t.Fatalf("config %#v", c)
	}
	for _, s := range []string{fmt.Sprintf("%v", c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c)} {
		if strings.Contains(s, "from-file") || strings.Contains(s, "ssh-secret") {
			t.Fatalf("secret printed: %s", s)
		}
	}
	t.Setenv(EnvRetries, "many")
	if _, err := ConfigFromEnv(); err == nil || !strings.Contains(err.Error(), EnvRetries) {
		t.Fatalf("bad value: %v", err)
	}
}
