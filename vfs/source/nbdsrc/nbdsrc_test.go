package nbdsrc

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/h2kvm/h2kvm/internal/libnbd/nbdkittest"
	"github.com/h2kvm/h2kvm/vfs"
	"github.com/h2kvm/h2kvm/vfs/source/retry"
)

var fastRetry = retry.Policy{Attempts: 8, BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond, MaxElapsed: 20 * time.Second}

func randomFile(t *testing.T, dir string, n int) (string, []byte) {
	t.Helper()
	data := make([]byte, n)
	r := rand.New(rand.NewPCG(7, 8))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	p := filepath.Join(dir, "disk.raw")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p, data
}

// parallelReads checks 8×25 random reads against data.
func parallelReads(t *testing.T, s vfs.Source, data []byte) {
	t.Helper()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for range 25 {
				off := r.Int64N(int64(len(data)))
				p := make([]byte, r.IntN(300000)+1)
				n, err := s.ReadAt(context.Background(), p, off)
				end := min(off+int64(len(p)), int64(len(data)))
				if int64(n) != end-off || (err != nil && err.Error() != "EOF") {
					t.Errorf("read %d at %d: n=%d err=%v", len(p), off, n, err)
					return
				}
				if !bytes.Equal(p[:n], data[off:end]) {
					t.Errorf("read %d at %d: wrong bytes", len(p), off)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestReadsMatchFile(t *testing.T) {
	file, data := randomFile(t, t.TempDir(), 4<<20+7)
	sock := nbdkittest.Start(t, "file", file)
	s, err := Open(context.Background(), "nbd+unix:///?socket="+sock, Options{Retry: fastRetry})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Size() != int64(len(data)) {
		t.Fatalf("size %d", s.Size())
	}
	parallelReads(t, s, data)
	if st := s.Stats(); st.Requests < 200 || st.Retries != 0 || st.BytesFetched == 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestInjectedErrorsRetried(t *testing.T) {
	file, data := randomFile(t, t.TempDir(), 2<<20)
	sock := nbdkittest.Start(t, "--filter=error", "file", file, "error=EIO", "error-pread-rate=30%")
	// 200 reads at 30% errors: with 8 attempts one read in 0.3⁻⁸ ≈ 15000 fails (a run in 75);
	// with 20 none does in practice.
	budget := fastRetry
	budget.Attempts = 20
	s, err := Open(context.Background(), "nbd+unix:///?socket="+sock, Options{Retry: budget})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	parallelReads(t, s, data)
	if st := s.Stats(); st.Retries == 0 {
		t.Fatalf("no retries with 30%% errors: %+v", st)
	} else {
		t.Logf("stats %+v", st)
	}
}

func TestPersistentErrorFailsClearly(t *testing.T) {
	file, _ := randomFile(t, t.TempDir(), 1<<20)
	sock := nbdkittest.Start(t, "--filter=error", "file", file, "error=EIO", "error-pread-rate=100%")
	uri := "nbd+unix:///?socket=" + sock
	s, err := Open(context.Background(), uri, Options{Retry: retry.Policy{Attempts: 3, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = s.ReadAt(context.Background(), make([]byte, 4096), 8192)
	if !errors.Is(err, vfs.ErrTransient) || !strings.Contains(err.Error(), uri) || !strings.Contains(err.Error(), "8192") || !strings.Contains(err.Error(), "gave up after 3") {
		t.Fatalf("got %v", err)
	}
	t.Log(err)
}

func TestStalledServer(t *testing.T) {
	file, data := randomFile(t, t.TempDir(), 1<<20)
	sock := nbdkittest.Start(t, "--filter=delay", "file", file, "rdelay=5")
	s, err := Open(context.Background(), "nbd+unix:///?socket="+sock, Options{StallTimeout: 200 * time.Millisecond, Retry: retry.Policy{Attempts: 2, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = s.ReadAt(context.Background(), make([]byte, 512), 0)
	if !errors.Is(err, vfs.ErrTransient) || !strings.Contains(err.Error(), "no reply within") {
		t.Fatalf("got %v", err)
	}
	// A delay under the stall timeout just works.
	sock2 := nbdkittest.Start(t, "--filter=delay", "file", file, "rdelay=50ms")
	s2, err := Open(context.Background(), "nbd+unix:///?socket="+sock2, Options{StallTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	p := make([]byte, 1000)
	if _, err := s2.ReadAt(context.Background(), p, 5000); err != nil || !bytes.Equal(p, data[5000:6000]) {
		t.Fatal(err)
	}
}

func TestMissingSocket(t *testing.T) {
	_, err := Open(context.Background(), "nbd+unix:///?socket="+filepath.Join(t.TempDir(), "none"), Options{Retry: retry.Policy{Attempts: 2, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}})
	if err == nil || !strings.Contains(err.Error(), "none") {
		t.Fatalf("got %v", err)
	}
	t.Log(err)
}

// A VMDK chain served by nbdkit's file plugin in dir mode: exports are file names, so the
// delta's parent hint resolves to another export on the same server.
func TestOpenerChain(t *testing.T) {
	nbdkittest.NeedTool(t, "qemu-img")
	dir := t.TempDir()
	for _, args := range [][]string{
		{"qemu-img", "create", "-q", "-f", "vmdk", "base.vmdk", "8M"},
		{"qemu-io", "-f", "vmdk", "-c", "write -P 0x33 1M 64k", "base.vmdk"},
		{"qemu-img", "create", "-q", "-f", "vmdk", "-b", "base.vmdk", "-F", "vmdk", "delta.vmdk"},
	} {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v: %v %s", args, err, out)
		}
	}
	sock := nbdkittest.Start(t, "file", "dir="+dir)
	first := "nbd+unix:///delta.vmdk?socket=" + sock
	o, err := NewOpener(first, Options{Retry: fastRetry})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	delta, err := o.Open(ctx, first)
	if err != nil {
		t.Fatal(err)
	}
	defer delta.Close()
	buf := make([]byte, delta.Size())
	if err := vfs.ReadFull(ctx, delta, buf, 0); err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`parentFileNameHint="([^"]+)"`).FindSubmatch(buf)
	if m == nil {
		t.Fatal("no parent hint")
	}
	pname, err := o.Resolve(first, string(m[1]))
	if err != nil || pname != "nbd+unix:///base.vmdk?socket="+sock {
		t.Fatalf("parent %q %v", pname, err)
	}
	base, err := o.Open(ctx, pname)
	if err != nil {
		t.Fatal(err)
	}
	defer base.Close()
	got := make([]byte, base.Size())
	if err := vfs.ReadFull(ctx, base, got, 0); err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(filepath.Join(dir, "base.vmdk"))
	if !bytes.Equal(got, want) {
		t.Fatal("base.vmdk bytes differ")
	}
	if _, err := o.Resolve(first, "../../etc/passwd"); !errors.Is(err, vfs.ErrChain) {
		t.Fatalf("escape: %v", err)
	}
	if _, err := o.Open(ctx, "nbd://example.com/x"); !errors.Is(err, vfs.ErrChain) {
		t.Fatalf("foreign server: %v", err)
	}
	if o.Stats().BytesFetched != int64(len(got)+len(buf)) {
		t.Fatalf("stats %+v", o.Stats())
	}
}
