package overlay_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/h2kvm/h2kvm/store"
	"github.com/h2kvm/h2kvm/vfs"
	"github.com/h2kvm/h2kvm/vfs/overlay"
)

// The crash test re-executes the test binary as a child (TestMain sees crashEnv) that writes to
// an overlay over the store, flushes every flushEvery operations and reports each completed
// flush on stdout, until the parent kills it with SIGKILL.

const (
	crashEnv   = "H2KVM_OVERLAY_CRASH_CHILD"
	crashSize  = 4 << 20
	flushEvery = 10
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashEnv); dir != "" {
		if err := crashChild(dir); err != nil {
			fmt.Fprintln(os.Stderr, "crash child:", err)
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// crashBase returns the base device of the crash test and its bytes; the same in both processes.
func crashBase() (*vfs.MemDevice, []byte) {
	ctx := context.Background()
	dev := vfs.NewMemDevice(crashSize)
	want := make([]byte, crashSize)
	rng := rand.New(rand.NewPCG(99, 1))
	for range 20 {
		off := rng.Int64N(crashSize - 100000)
		p := make([]byte, 1+rng.IntN(100000))
		for i := range p {
			p[i] = byte(rng.UintN(256))
		}
		dev.WriteAt(ctx, p, off)
		copy(want[off:], p)
	}
	return dev, want
}

type crashOp struct {
	kind   int // 0 write, 1 zero, 2 trim
	off, n int64
	seed   uint64
}

// opAt is the k-th operation of the child.
func opAt(k int) crashOp {
	rng := rand.New(rand.NewPCG(uint64(k), 2024))
	op := crashOp{seed: uint64(k)}
	if rng.IntN(2) == 0 { // whole blocks
		first := rng.Int64N(crashSize / bs)
		op.off = first * bs
		op.n = (1 + rng.Int64N(min(4, crashSize/bs-first))) * bs
	} else {
		op.off = rng.Int64N(crashSize - 1)
		op.n = 1 + rng.Int64N(min(200000, crashSize-op.off))
	}
	switch r := rng.IntN(10); {
	case r < 7:
		op.kind = 0
	case r < 9:
		op.kind = 1
	default:
		op.kind = 2
	}
	return op
}

// data returns the bytes a write op writes (zeros for zero and trim).
func (op crashOp) data() []byte {
	p := make([]byte, op.n)
	if op.kind == 0 {
		var seed [32]byte
		seed[0], seed[1] = byte(op.seed), byte(op.seed>>8)
		rand.NewChaCha8(seed).Read(p)
	}
	return p
}

func crashChild(dir string) error {
	ctx := context.Background()
	s, err := store.Open(filepath.Join(dir, "state.db"), store.Options{})
	if err != nil {
		return err
	}
	base, _ := crashBase()
	o, err := overlay.Open(ctx, base, overlay.Config{Path: filepath.Join(dir, "ov"), Map: s.OverlayMap("crash")})
	if err != nil {
		return err
	}
	deadline := time.Now().Add(60 * time.Second) // never outlive a parent that died
	for k := 0; time.Now().Before(deadline); k++ {
		op := opAt(k)
		switch op.kind {
		case 0:
			_, err = o.WriteAt(ctx, op.data(), op.off)
		case 1:
			err = o.Zero(ctx, op.off, op.n)
		case 2:
			err = o.Trim(ctx, op.off, op.n)
		}
		if err != nil {
			return fmt.Errorf("op %d: %w", k, err)
		}
		if (k+1)%flushEvery == 0 {
			if err := o.Flush(ctx); err != nil {
				return err
			}
			fmt.Fprintf(os.Stdout, "FLUSH %d\n", k+1) // one write(2): in the pipe whole or not at all
		}
	}
	return nil
}

func TestCrashAfterFlush(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	for run := range 3 {
		t.Run(fmt.Sprint(run), func(t *testing.T) { crashOnce(t, 5+run*7, time.Duration(run*7)*time.Millisecond) })
	}
}

func crashOnce(t *testing.T, minFlushes int, extra time.Duration) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashEnv+"="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	last, seen := 0, 0
	for sc.Scan() {
		n, err := strconv.Atoi(strings.TrimPrefix(sc.Text(), "FLUSH "))
		if err != nil {
			t.Fatalf("child said %q", sc.Text())
		}
		last = n
		if seen++; seen == minFlushes {
			time.Sleep(extra)
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
		}
	}
	err = cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die by SIGKILL: %v", err)
	}
	t.Logf("child killed after %d acknowledged flushes (%d operations flushed)", seen, last)

	// Reopen: the store must be consistent and every flushed operation present.
	ctx := context.Background()
	s, err := store.Open(filepath.Join(dir, "state.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Check(ctx); err != nil {
		t.Fatalf("bbolt check after kill -9: %v", err)
	}
	base, model := crashBase()
	o, err := overlay.Open(ctx, base, overlay.Config{Path: filepath.Join(dir, "ov"), Map: s.OverlayMap("crash")})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if g := o.Stats().Generation; g < uint64(seen) {
		t.Errorf("generation %d after %d acknowledged flushes", g, seen)
	}
	got := make([]byte, crashSize)
	if _, err := o.ReadAt(ctx, got, 0); err != nil {
		t.Fatal(err)
	}
	for k := range last {
		op := opAt(k)
		copy(model[op.off:], op.data())
	}
	// Operations after the last acknowledged flush may or may not have landed (the child can
	// have done at most two more flush intervals): each byte must be the flushed state or a
	// byte one of those operations put there.
	type laterOp struct {
		crashOp
		data []byte
	}
	var later []laterOp
	for k := last; k < last+2*flushEvery; k++ {
		op := opAt(k)
		later = append(later, laterOp{op, op.data()})
	}
	bad := 0
	for b := int64(0); b < crashSize; b++ {
		if b%bs == 0 && bytes.Equal(got[b:b+bs], model[b:b+bs]) {
			b += bs - 1
			continue
		}
		if got[b] == model[b] {
			continue
		}
		ok := false
		for _, op := range later {
			if b >= op.off && b < op.off+op.n && got[b] == op.data[b-op.off] {
				ok = true
				break
			}
		}
		if !ok {
			if bad++; bad < 5 {
				t.Errorf("byte %d (block %d) = %#x: neither the flushed state %#x nor a later write", b, b/bs, got[b], model[b])
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%d bytes wrong after kill -9", bad)
	}
}
