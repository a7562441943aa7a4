package nbdserve

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/h2kvm/h2kvm/internal/testenv"
)

// Clients that send READs and never read the replies must not make the server buffer more
// than Options.MaxBufferedBytes in all, must be cut by the write deadline, and must not keep a
// well-behaved client (nbdcopy) from completing its reads.
func TestMisbehavingClientsStayWithinBudget(t *testing.T) {
	testenv.ToolPath(t, "nbdcopy")
	const budget = MaxPayload // the smallest budget allowed
	ts := startServer(t, Options{
		MaxBufferedBytes: budget,
		MaxInFlightBytes: budget, // one bad client alone could fill the budget
		WriteTimeout:     time.Second,
	})
	dev := newTestDevice(t)
	if err := ts.AddExport("ro", dev, ExportOptions{ReadOnly: true}); err != nil {
		t.Fatal(err)
	}
	const bad, reads = 4, 64 // each asks for 64 MiB of replies it never reads
	var rcs []*rawClient
	for range bad {
		rc := connectRaw(t, ts, "ro", false)
		for i := range reads {
			rc.request(cmdRead, 0, uint64(i), uint64(i%8)<<20, 1<<20, nil)
		}
		rcs = append(rcs, rc)
	}
	// The well-behaved client starts while the bad ones hold the budget.
	out := filepath.Join(t.TempDir(), "copy.raw")
	var wg sync.WaitGroup
	wg.Add(1)
	var copyErr error
	var copyOut string
	go func() {
		defer wg.Done()
		copyOut, copyErr = runErr(2*time.Minute, "nbdcopy", ts.uri("ro"), out)
	}()
	wg.Wait()
	if copyErr != nil {
		t.Fatalf("nbdcopy beside misbehaving clients: %v\n%s", copyErr, copyOut)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, deviceBytes(t, dev)) {
		t.Fatal("nbdcopy read different bytes")
	}
	waitFor(t, func() bool { return ts.ServerStats().Dropped >= bad })
	for _, rc := range rcs {
		// A dropped client reads what had reached its socket, then EOF.
		rc.c.SetReadDeadline(time.Now().Add(30 * time.Second))
		if _, err := io.Copy(io.Discard, rc.c); err != nil {
			t.Errorf("misbehaving client was not disconnected: %v", err)
		}
	}
	st := ts.ServerStats()
	t.Logf("stats: %+v", st)
	if st.PeakBufferedBytes > budget {
		t.Errorf("server buffered %d bytes at its peak, budget %d", st.PeakBufferedBytes, budget)
	}
	waitFor(t, func() bool { return ts.ServerStats().BufferedBytes == 0 })
}

// Connections beyond Options.MaxConns are closed before the greeting; closing one makes room.
func TestMaxConns(t *testing.T) {
	ts := startServer(t, Options{MaxConns: 2})
	if err := ts.AddExport("ro", newTestDevice(t), ExportOptions{ReadOnly: true}); err != nil {
		t.Fatal(err)
	}
	a := connectRaw(t, ts, "ro", false)
	connectRaw(t, ts, "ro", false)
	extra := ts.dial(t)
	extra.SetReadDeadline(time.Now().Add(10 * time.Second))
	if b, err := io.ReadAll(extra); err != nil || len(b) != 0 {
		t.Fatalf("connection beyond the limit: read %d bytes (% x), err %v; want a close before the greeting", len(b), b, err)
	}
	if st := ts.ServerStats(); st.Refused != 1 || st.Connections != 2 {
		t.Fatalf("stats %+v, want 1 refused and 2 open", st)
	}
	a.request(cmdDisc, 0, 0, 0, 0, nil)
	a.expectClosed()
	waitFor(t, func() bool { return ts.ServerStats().Connections == 1 })
	rc := connectRaw(t, ts, "ro", false)
	if errno := rc.simple(cmdFlush, 0, 0, 0, nil); errno != 0 {
		t.Fatalf("FLUSH on the connection that took the freed slot: errno %d", errno)
	}
}

// waitFor polls cond for up to 20 s.
func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 20 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
