package integration

// Helpers of the `h2kvm migrate` tests (migrate_test.go): the H2KVM_INTEGRATION gate, the test
// guest, a migrate process whose --json events the test can watch, a sampler of the output
// folder's disk use, and comparisons through qemu-img.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/h2kvm/h2kvm/internal/testenv"
	"github.com/h2kvm/h2kvm/pipeline/migrate"
	"github.com/h2kvm/h2kvm/tools/guestbuild/guests"
	"github.com/h2kvm/h2kvm/vfs/source"
)

// needIntegration skips unless H2KVM_INTEGRATION=1: the migrate tests boot libguestfs
// appliances and guests under TCG and take minutes each.
func needIntegration(t testing.TB) {
	t.Helper()
	if os.Getenv("H2KVM_INTEGRATION") != "1" {
		t.Skip("set H2KVM_INTEGRATION=1 to run the end-to-end migrate tests (minutes each: libguestfs and guest boots under TCG)")
	}
	if testing.Short() {
		t.Skip("-short")
	}
}

// migrateGuest returns the cached debian-bios test guest, building it first on a cold cache
// (about 20 minutes).
func migrateGuest(t testing.TB) guests.Guest {
	t.Helper()
	needTool(t, "qemu-img", "guestfish", "qemu-system-x86_64")
	if _, err := guests.Cached("debian-bios", ""); err != nil {
		needTool(t, guests.RequiredTools...)
		t.Logf("debian-bios is not cached (%v): building it", err)
	}
	g, err := guests.Build(context.Background(), "debian-bios", "")
	if err != nil {
		t.Fatalf("test guest debian-bios: %v", err)
	}
	return g
}

// migrateEnv is the environment of the migrate processes: libguestfs's direct backend, and no
// KVM probe unless the caller chose (KVM is unusable on the project's machines).
// TMPDIR is the process's own, not one a test set for itself (libguestfs keeps its appliance
// cache there).
func migrateEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TMPDIR=") {
			env = append(env, kv)
		}
	}
	if origTMPDIR != "" {
		env = append(env, "TMPDIR="+origTMPDIR)
	}
	env = append(env, "LIBGUESTFS_BACKEND=direct")
	if os.Getenv("H2KVM_KVM") == "" {
		env = append(env, "H2KVM_KVM=off")
	}
	return append(env, extra...)
}

// origTMPDIR is TMPDIR as the test process found it.
var origTMPDIR = os.Getenv("TMPDIR")

// event is one --json line of `h2kvm migrate`: a stage event, a progress line or, last, the
// job record.
type event struct {
	migrate.Event
	Kind string `json:"event"` // "progress" for progress lines
}

// migration is a running `h2kvm migrate --json`.
type migration struct {
	cmd     *exec.Cmd
	args    []string
	stderr  *syncBuffer
	start   time.Time
	done    chan struct{}
	elapsed time.Duration
	code    int

	mu     sync.Mutex
	events []event
	last   []byte // the last stdout line: the job record on a normal exit
}

// startMigrate starts `h2kvm migrate --json args...`; onEvent (may be nil) sees every stage and
// progress event as it is printed. The process is killed when the test ends.
func startMigrate(t testing.TB, env []string, onEvent func(event), args ...string) *migration {
	t.Helper()
	args = append([]string{"migrate", "--json"}, args...)
	m := &migration{cmd: exec.Command(h2kvmBinary(t), args...), args: args, stderr: new(syncBuffer), done: make(chan struct{})}
	m.cmd.Env = env
	m.cmd.Stderr = m.stderr
	out, err := m.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	m.start = time.Now()
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			line := bytes.Clone(sc.Bytes())
			var e event
			if json.Unmarshal(line, &e) == nil && (e.Stage != "" && e.Status != "" || e.Kind == "progress") {
				m.mu.Lock()
				m.events = append(m.events, e)
				m.mu.Unlock()
				if onEvent != nil {
					onEvent(e)
				}
			}
			m.mu.Lock()
			m.last = line
			m.mu.Unlock()
		}
		m.cmd.Wait()
		m.elapsed = time.Since(m.start)
		m.code = m.cmd.ProcessState.ExitCode()
		close(m.done)
	}()
	t.Cleanup(func() {
		m.cmd.Process.Kill()
		<-m.done
		if t.Failed() {
			t.Logf("h2kvm %s (exit %d) stderr:\n%s", strings.Join(args, " "), m.code, tail(m.stderr.String(), 6000))
		}
	})
	return m
}

// wait waits for the process to end (at most d) and returns its exit code.
func (m *migration) wait(t testing.TB, d time.Duration) int {
	t.Helper()
	select {
	case <-m.done:
	case <-time.After(d):
		m.cmd.Process.Kill()
		<-m.done
		t.Fatalf("h2kvm %s did not end within %v\n%s", strings.Join(m.args, " "), d, tail(m.stderr.String(), 6000))
	}
	return m.code
}

// kill sends SIGKILL and waits for the process to end.
func (m *migration) kill(t testing.TB) {
	t.Helper()
	m.cmd.Process.Signal(syscall.SIGKILL)
	<-m.done
}

// job returns the job record printed last, or nil.
func (m *migration) job() *migrate.Job {
	m.mu.Lock()
	defer m.mu.Unlock()
	var j migrate.Job
	if json.Unmarshal(m.last, &j) != nil || j.ID == "" {
		return nil
	}
	return &j
}

// saw reports whether an event of stage with status was printed; message, when not empty,
// must be part of its message.
func (m *migration) saw(stage migrate.Stage, status, message string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range m.events {
		if e.Stage == stage && e.Status == status && strings.Contains(e.Message, message) {
			return true
		}
	}
	return false
}

// count returns how many events of stage with status were printed.
func (m *migration) count(stage migrate.Stage, status string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, e := range m.events {
		if e.Stage == stage && e.Status == status {
			n++
		}
	}
	return n
}

// runMigrate runs `h2kvm migrate --json args...` to its end (at most d) and returns it.
func runMigrate(t testing.TB, env []string, d time.Duration, args ...string) *migration {
	t.Helper()
	m := startMigrate(t, env, nil, args...)
	m.wait(t, d)
	return m
}

// readReport reads OUTPUT/report.json.
func readReport(t testing.TB, dir string) *migrate.Job {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "report.json"))
	if err != nil {
		t.Fatalf("report.json: %v", err)
	}
	var j migrate.Job
	if err := json.Unmarshal(b, &j); err != nil {
		t.Fatalf("report.json: %v", err)
	}
	return &j
}

// sampler samples the disk use (allocated bytes) of every file under a folder, twice a second.
type sampler struct {
	mu sync.Mutex
	// peakFile is the largest allocation each file reached.
	peakFile map[string]int64
	// peakState is the largest total allocation under OUTPUT/.h2kvm.
	peakState int64
	samples   int
	stop      chan struct{}
	stopped   chan struct{}
}

func sampleDir(dir string) *sampler {
	s := &sampler{peakFile: map[string]int64{}, stop: make(chan struct{}), stopped: make(chan struct{})}
	state := filepath.Join(dir, ".h2kvm")
	go func() {
		defer close(s.stopped)
		for {
			var stateUse int64
			files := map[string]int64{}
			filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return nil
				}
				info, err := d.Info()
				if err != nil {
					return nil
				}
				st, ok := info.Sys().(*syscall.Stat_t)
				if !ok {
					return nil
				}
				files[p] = st.Blocks * 512
				if strings.HasPrefix(p, state+string(filepath.Separator)) {
					stateUse += st.Blocks * 512
				}
				return nil
			})
			s.mu.Lock()
			s.samples++
			for p, n := range files {
				s.peakFile[p] = max(s.peakFile[p], n)
			}
			s.peakState = max(s.peakState, stateUse)
			s.mu.Unlock()
			select {
			case <-s.stop:
				return
			case <-time.After(500 * time.Millisecond):
			}
		}
	}()
	return s
}

func (s *sampler) finish() {
	close(s.stop)
	<-s.stopped
}

// qemuImgInfo returns `qemu-img info --output=json` of path.
func qemuImgInfo(t testing.TB, path string) (format string, virtual, actual int64) {
	t.Helper()
	var info struct {
		Format      string `json:"format"`
		VirtualSize int64  `json:"virtual-size"`
		ActualSize  int64  `json:"actual-size"`
	}
	if err := json.Unmarshal([]byte(runCmd(t, "", "qemu-img", "info", "--output=json", path)), &info); err != nil {
		t.Fatalf("qemu-img info %s: %v", path, err)
	}
	return info.Format, info.VirtualSize, info.ActualSize
}

// sameContent fails the test unless `qemu-img compare` finds the guest-visible contents of a
// and b identical (any formats; b may be an NBD URI).
func sameContent(t testing.TB, a, b string) {
	t.Helper()
	out, err := exec.Command("qemu-img", "compare", a, b).CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-img compare %s %s: %v\n%s", a, b, err, out)
	}
}

// timed runs a command and returns how long it took; it fails the test on error.
func timed(t testing.TB, args ...string) time.Duration {
	t.Helper()
	start := time.Now()
	runCmd(t, "", args...)
	return time.Since(start)
}

// fileSums returns the sha256 lines of the files of a guest's chain (sha256Dir of their folder
// would also hash files other tests may add).
func fileSums(t testing.TB, files ...string) string {
	t.Helper()
	var b strings.Builder
	for _, f := range files {
		b.WriteString(strings.TrimSpace(runCmd(t, "", "sha256sum", f)) + "\n")
	}
	return b.String()
}

// procsUsing returns the processes (pid and command line) whose command line mentions s: the
// children a killed migrate may have left behind.
func procsUsing(s string) []string {
	var found []string
	ents, _ := os.ReadDir("/proc")
	self := fmt.Sprint(os.Getpid())
	for _, e := range ents {
		if e.Name()[0] < '0' || e.Name()[0] > '9' || e.Name() == self {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(b, []byte(s)) {
			continue
		}
		found = append(found, e.Name()+": "+string(bytes.ReplaceAll(b, []byte{0}, []byte{' '})))
	}
	return found
}

// noProcsUsing waits up to 30 s for the processes mentioning s to end, and fails otherwise.
func noProcsUsing(t testing.TB, s string) {
	t.Helper()
	var left []string
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		if left = procsUsing(s); len(left) == 0 {
			return
		}
	}
	t.Fatalf("processes left running after h2kvm was killed:\n%s", strings.Join(left, "\n"))
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// mib formats bytes for the test log.
func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

var _ io.Writer = (*syncBuffer)(nil)

// vcsimDatastore starts govmomi's vCenter simulator over TLS, accepting only user/pass, with
// files linked into folder vm/ of its datastore LocalDS_0; it returns the /folder URL of each
// file, in order, and the environment a child process needs to log in and trust the server.
func vcsimDatastore(t testing.TB, files ...string) (urls []string, env []string) {
	t.Helper()
	sim := testenv.StartVCSim(t, "migrator@vsphere.local", "s3cret-Pass")
	urls = sim.Link(t, "vm", files...)
	env = []string{
		source.EnvVSphereUser + "=" + sim.User,
		source.EnvVSpherePassword + "=" + sim.Pass,
		source.EnvTLSThumbprint + "=" + sim.Thumbprint,
	}
	return urls, env
}
