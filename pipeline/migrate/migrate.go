package migrate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/h2kvm/h2kvm/daemon"
	"github.com/h2kvm/h2kvm/fixers"
	"github.com/h2kvm/h2kvm/fixers/all"
	"github.com/h2kvm/h2kvm/fixers/gfs"
	"github.com/h2kvm/h2kvm/pipeline"
	"github.com/h2kvm/h2kvm/pipeline/convert"
	"github.com/h2kvm/h2kvm/pipeline/host"
	"github.com/h2kvm/h2kvm/pipeline/machine"
	"github.com/h2kvm/h2kvm/pipeline/target"
	"github.com/h2kvm/h2kvm/pipeline/target/libvirt"
	"github.com/h2kvm/h2kvm/store"
	"github.com/h2kvm/h2kvm/vfs/source"
	"github.com/h2kvm/h2kvm/vfs/source/vsession"
)

// Options configure Run.
type Options struct {
	Source string
	// SourceConfig configures the sources (credentials, TLS, timeouts); the CLI builds it from
	// the environment. Migrate itself reads no environment.
	SourceConfig source.Config
	OutputDir    string
	// Name of the outputs and the domain (default: the VM's name).
	Name string
	// Server is the control socket of a running daemon; empty runs one in this process with
	// its state in OutputDir/.h2kvm.
	Server   string
	Format   string // qcow2 (default) or raw
	Compress bool
	// Target writes and checks the VM definition in VALIDATE; nil means libvirt.
	Target target.Target
	// BootTest boots the result (the Target must be a target.BootTester) and proves login
	// prompt and network.
	BootTest    bool
	BootTimeout time.Duration
	// Resume continues the job recorded in OutputDir after its last completed stage.
	Resume bool
	// DryRun stops after PLAN: nothing is written into the guest, no output is made.
	DryRun bool
	// Skip lists stages not to run (only FIX and VALIDATE may be skipped).
	Skip []Stage
	// Snapshot chooses a vSphere snapshot.
	Snapshot string
	// VerifyDisks reads every OVA/OVF disk once completely during FETCH and refuses the
	// source when a digest differs from the manifest.
	VerifyDisks bool
	// NoVerifyDisks turns off the default check of OVA/OVF disks against their manifest
	// digests (made at the end of CONVERT, from the bytes read, before the output is renamed
	// into place).
	NoVerifyDisks bool
	CacheLimit    int64
	Plan          fixers.PlanOptions
	// Fixers are the guest fixers INSPECT chooses from (fixers.Select); nil means all.Fixers().
	Fixers []fixers.Fixer
	// KeepState keeps OutputDir/.h2kvm (overlays, cache, job record) after success.
	KeepState bool
	Log       *slog.Logger
	// Events receives progress: stage starts and ends, conversion percentages, the plan.
	Events func(Event)
}

// Event is one progress report.
type Event struct {
	Stage   Stage   `json:"stage"`
	Status  string  `json:"status"` // start, done, skipped, progress, plan, change, warning
	Percent float64 `json:"percent,omitempty"`
	Message string  `json:"message,omitempty"`
}

// ErrJobExists: the output folder holds a job and Resume was not asked for. Permanent.
var ErrJobExists = errors.New("a job exists in the output folder")

const jobKey = "job"

// backend is where the exports live: an embedded daemon or a running one.
type backend interface {
	CreateExport(ctx context.Context, spec daemon.ExportSpec) (daemon.ExportInfo, error)
	GetExport(ctx context.Context, name string) (daemon.ExportInfo, error)
	DeleteExport(ctx context.Context, name string, discard bool) error
	Verify(ctx context.Context, name string, req daemon.VerifyRequest) (daemon.Verification, error)
}

// runner holds one run's state.
type runner struct {
	opt    Options
	job    *Job
	db     *store.Store
	be     backend
	socket string
	state  string // OutputDir/.h2kvm
	log    *slog.Logger
	peak   atomic.Int64
	fixer  fixers.Fixer // chosen at INSPECT
}

// Run migrates opt.Source into opt.OutputDir. It returns the job record, also on failure (with
// the failed stage recorded), and writes report.json and report.md into the output folder.
func Run(ctx context.Context, opt Options) (*Job, error) {
	if opt.Format == "" {
		opt.Format = "qcow2"
	}
	if opt.Log == nil {
		opt.Log = slog.Default()
	}
	for _, s := range opt.Skip {
		if !Skippable[s] {
			return nil, fmt.Errorf("migrate: stage %q cannot be skipped (only fix and validate can)", s)
		}
	}
	if err := os.MkdirAll(opt.OutputDir, 0o700); err != nil { // the reports describe the guest
		return nil, fmt.Errorf("migrate: output folder: %w", err)
	}
	r := &runner{opt: opt, log: opt.Log, state: filepath.Join(opt.OutputDir, ".h2kvm")}
	if err := os.MkdirAll(r.state, 0o700); err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	db, err := store.Open(filepath.Join(r.state, "job.db"), store.Options{})
	if err != nil {
		return nil, err
	}
	r.db = db
	defer db.Close()
	if err := r.loadJob(ctx); err != nil {
		return nil, err
	}

	// One vSphere login serves both the inventory (FETCH) and the embedded daemon's datastore
	// reads of the disks; it ends with the daemon.
	if r.opt.SourceConfig.VSphereSessions == nil {
		shelf := vsession.NewShelf()
		r.opt.SourceConfig.VSphereSessions = shelf
		defer func() {
			if err := shelf.Close(context.WithoutCancel(ctx)); err != nil {
				r.log.Warn("vSphere logout", "err", err)
			}
		}()
	}
	closeBackend, err := r.startBackend(ctx)
	if err != nil {
		return r.job, err
	}
	stopSampler := r.sampleStaging()
	err = r.stages(ctx)
	stopSampler()
	r.job.PeakStagingBytes = r.peak.Load()
	r.collectStats(context.WithoutCancel(ctx))
	r.save(context.WithoutCancel(ctx))
	if rerr := writeReports(r.job); rerr != nil && err == nil {
		err = rerr
	}
	// A dry run of a new job leaves nothing behind but its reports: its exports and state go
	// as after a success, so that neither a later run nor a running daemon is left holding
	// them. A dry run of a resumed job keeps them: the job goes on.
	success := err == nil && !(opt.DryRun && opt.Resume)
	if success {
		for _, e := range r.job.Exports {
			if derr := r.be.DeleteExport(context.WithoutCancel(ctx), e, true); derr != nil {
				r.log.Warn("removing export", "export", e, "err", derr)
			}
		}
	}
	closeBackend()
	if success && !opt.KeepState {
		db.Close()
		os.RemoveAll(r.state)
	}
	return r.job, err
}

func (r *runner) loadJob(ctx context.Context) error {
	var j Job
	err := r.db.Job(ctx, jobKey, &j)
	switch {
	case err == nil && !r.opt.Resume:
		return fmt.Errorf("migrate: %s: %w (started %s from %s); use --resume, or another folder",
			r.opt.OutputDir, ErrJobExists, j.Stages[Fetch].Started.Format(time.RFC3339), j.Source)
	case err == nil && r.opt.Resume:
		if j.Source != r.opt.Source {
			return fmt.Errorf("migrate: --resume: the job in %s migrates %s, not %s", r.opt.OutputDir, j.Source, r.opt.Source)
		}
		r.job = &j
		return nil
	case err != nil && !errors.Is(err, os.ErrNotExist) && !isNotFound(err):
		return err
	case r.opt.Resume:
		return fmt.Errorf("migrate: --resume: no job recorded in %s", r.opt.OutputDir)
	}
	r.job = &Job{
		ID:     fmt.Sprintf("m%x", time.Now().UnixNano()&0xffffffffff),
		Source: r.opt.Source, Output: r.opt.OutputDir, Format: r.opt.Format,
		Stages: map[Stage]StageRecord{},
	}
	return nil
}

func (r *runner) startBackend(ctx context.Context) (func(), error) {
	if r.opt.Server != "" {
		c := daemon.NewClient(r.opt.Server)
		si, err := c.Server(ctx)
		if err != nil {
			return nil, fmt.Errorf("migrate: --server %s: %w", r.opt.Server, err)
		}
		if si.NBDSocket == "" {
			return nil, fmt.Errorf("migrate: the daemon at %s serves no NBD unix socket (start it with --nbd-socket)", r.opt.Server)
		}
		r.be, r.socket = c, si.NBDSocket
		return func() {}, nil
	}
	emb, err := daemon.StartEmbedded(ctx, daemon.EmbeddedOptions{
		StateDir: filepath.Join(r.state, "state"), CacheLimit: r.opt.CacheLimit, Source: r.opt.SourceConfig, Logger: r.log,
	})
	if err != nil {
		return nil, err
	}
	r.be, r.socket = emb, emb.Socket
	return func() {
		if err := emb.Close(); err != nil {
			r.log.Warn("stopping the embedded daemon", "err", err)
		}
	}, nil
}

func (r *runner) emit(e Event) {
	if r.opt.Events != nil {
		r.opt.Events(e)
	}
}

func (r *runner) skipped(s Stage) bool {
	for _, k := range r.opt.Skip {
		if k == s {
			return true
		}
	}
	return false
}

func (r *runner) save(ctx context.Context) {
	if err := r.db.PutJob(ctx, jobKey, r.job); err != nil {
		r.log.Warn("saving the job record", "err", err)
	}
}

// stage runs fn as stage s unless the job already completed it, and records the outcome.
func (r *runner) stage(ctx context.Context, s Stage, fn func() error) error {
	if r.job.done(s) {
		r.emit(Event{Stage: s, Status: "done", Message: "already done (resumed)"})
		return nil
	}
	rec := StageRecord{Started: time.Now().UTC()}
	r.emit(Event{Stage: s, Status: "start"})
	err := fn()
	rec.Ended = time.Now().UTC()
	rec.Seconds = rec.Ended.Sub(rec.Started).Seconds()
	switch {
	case errors.Is(err, errSkipped):
		rec.Status, err = "skipped", nil
	case err != nil:
		rec.Status, rec.Error = "failed", err.Error()
	default:
		rec.Status = "done"
	}
	r.job.Stages[s] = rec
	r.save(context.WithoutCancel(ctx))
	r.emit(Event{Stage: s, Status: rec.Status, Message: rec.Error})
	return err
}

var errSkipped = errors.New("skipped")

// stages runs the stage order.
func (r *runner) stages(ctx context.Context) error {
	if err := r.stage(ctx, Fetch, func() error { return r.fetch(ctx) }); err != nil {
		return err
	}
	if err := r.stage(ctx, Flatten, func() error { return r.flatten(ctx) }); err != nil {
		return err
	}
	// INSPECT, PLAN and FIX share one appliance; a FIX that did not complete is redone from
	// INSPECT (every fixer is idempotent).
	if !r.job.done(Fix) {
		delete(r.job.Stages, Inspect)
		delete(r.job.Stages, Plan)
		if err := r.guestStages(ctx); err != nil {
			return err
		}
	} else {
		for _, s := range []Stage{Inspect, Plan, Fix} {
			r.emit(Event{Stage: s, Status: "done", Message: "already done (resumed)"})
		}
	}
	if r.opt.DryRun {
		return nil
	}
	if err := r.stage(ctx, Convert, func() error { return r.convert(ctx) }); err != nil {
		return err
	}
	return r.stage(ctx, Validate, func() error {
		if r.skipped(Validate) {
			return errSkipped
		}
		return r.validate(ctx)
	})
}

func (r *runner) fetch(ctx context.Context) error {
	vm, err := ResolveVM(ctx, r.opt.Source, r.opt.SourceConfig, ResolveOptions{Snapshot: r.opt.Snapshot, VerifyDisks: r.opt.VerifyDisks,
		NoVerifyDisks: r.opt.NoVerifyDisks, Sessions: r.opt.SourceConfig.VSphereSessions,
		Warn: func(m string) {
			r.job.Warnings = append(r.job.Warnings, m)
			r.emit(Event{Stage: Fetch, Status: "warning", Message: m})
		}})
	if err != nil {
		return err
	}
	if len(vm.Disks) == 0 {
		return fmt.Errorf("fetch: %s has no disks: %w", r.opt.Source, pipeline.ErrGuestNotBootable)
	}
	r.job.VM = vm
	r.job.Name = r.opt.Name
	if r.job.Name == "" {
		r.job.Name = safeName(vm.Name)
	}
	// Outputs of an earlier job are never overwritten: say so now rather than after minutes
	// of INSPECT and FIX.
	if !r.opt.Resume && !r.opt.DryRun {
		for i := range vm.Disks {
			if out := r.outputPathOf(i, len(vm.Disks)); fileExists(out) {
				return fmt.Errorf("fetch: %s exists (from an earlier migration?): %w; remove it or choose another output folder", out, os.ErrExist)
			}
		}
	}
	return nil
}

func fileExists(p string) bool { _, err := os.Lstat(p); return err == nil }

func (r *runner) flatten(ctx context.Context) error {
	r.job.Exports, r.job.Disks = nil, nil
	r.job.VirtualBytes, r.job.AllocatedBytes = 0, 0
	for i, d := range r.job.VM.Disks {
		name := fmt.Sprintf("%s-disk%d", r.job.ID, i)
		spec := daemon.ExportSpec{Name: name, Source: d.Source, KeepOverlay: true}
		if m := d.Manifest; m != nil && m.State == machine.DigestUnverified {
			spec.Manifest = &daemon.Digest{Alg: m.Alg, Hex: m.Hex}
		}
		if _, err := r.be.CreateExport(ctx, spec); err != nil && !errors.Is(err, daemon.ErrExists) {
			return fmt.Errorf("flatten: disk %d (%s): %w", i, d.Source, err)
		}
		info, err := r.be.GetExport(ctx, name)
		if err != nil {
			return fmt.Errorf("flatten: disk %d: %w", i, err)
		}
		dr := DiskReport{Index: i, Source: d.Source, Controller: d.Controller, Unit: d.Unit, Export: name,
			Target: libvirt.DiskTarget(i), VirtualBytes: info.VirtualSize}
		if info.Chain != nil {
			for _, l := range info.Chain.Links {
				dr.AllocatedBytes += l.AllocatedBytes
			}
		}
		r.job.Exports = append(r.job.Exports, name)
		r.job.Disks = append(r.job.Disks, dr)
		r.job.VirtualBytes += dr.VirtualBytes
		r.job.AllocatedBytes += dr.AllocatedBytes
	}
	return nil
}

// guestStages runs INSPECT, PLAN and FIX in one libguestfs session.
func (r *runner) guestStages(ctx context.Context) error {
	readOnly := r.opt.DryRun || r.skipped(Fix)
	var drives []gfs.Drive
	for _, e := range r.job.Exports {
		drives = append(drives, gfs.NBD(r.socket, e, readOnly))
	}
	kvm, _ := host.CheckKVM(ctx)
	var sess *gfs.Session
	defer func() {
		if sess != nil {
			if err := sess.Close(); err != nil {
				r.log.Warn("closing the libguestfs session", "err", err)
			}
		}
	}()
	err := r.stage(ctx, Inspect, func() error {
		var err error
		sess, err = gfs.Open(ctx, gfs.Options{ForceTCG: !kvm, Identifier: r.job.ID}, drives...)
		if err != nil {
			return fmt.Errorf("inspect: %w", err)
		}
		fx, _, err := fixers.Select(ctx, sess.G(), r.fixerList())
		if err != nil {
			return notBootable("inspect", err)
		}
		r.fixer = fx
		r.job.Fixer = fx.Name()
		in, err := fx.Inspect(ctx, sess.G())
		if err != nil {
			return notBootable("inspect", err)
		}
		r.job.Facts, r.job.GuestFirmware = in.Facts, in.Firmware
		return nil
	})
	if err != nil {
		return err
	}
	err = r.stage(ctx, Plan, func() error {
		opt := r.opt.Plan
		if len(opt.KeepMACs) == 0 {
			for _, n := range r.job.VM.NICs {
				if n.MAC != "" {
					opt.KeepMACs = append(opt.KeepMACs, n.MAC)
				}
			}
		}
		p, err := r.fixer.Plan(r.job.Facts, opt)
		if err != nil {
			return notBootable("plan", err)
		}
		r.job.Plan, r.job.PlanSummary = p.Data, &p.PlanSummary
		for _, f := range p.Fixes {
			r.emit(Event{Stage: Plan, Status: "plan", Message: f.String()})
		}
		return nil
	})
	if err != nil || r.opt.DryRun {
		return err
	}
	err = r.stage(ctx, Fix, func() error {
		if r.skipped(Fix) {
			return errSkipped
		}
		rec := r.newFixRecorder(ctx)
		rep, err := r.fixer.Apply(ctx, sess.G(), r.job.Facts, r.job.Plan, rec.record)
		rec.finish(rep)
		if err != nil {
			return notBootable("fix", err)
		}
		// Shutting the appliance down flushes its writes to the exports' overlays.
		err = sess.Close()
		sess = nil
		if err != nil {
			return fmt.Errorf("fix: closing the appliance: %w", err)
		}
		return nil
	})
	return err
}

// isRefusal reports whether the fixers refused the guest.
func isRefusal(err error) bool { return fixers.IsRefusal(err) }

// fixerList is what INSPECT chooses the fixer from.
func (r *runner) fixerList() []fixers.Fixer {
	if r.opt.Fixers != nil {
		return r.opt.Fixers
	}
	return all.Fixers()
}

// notBootable marks the errors that mean the guest cannot be made to boot.
func notBootable(stage string, err error) error {
	if isRefusal(err) {
		return fmt.Errorf("%s: %w: %w", stage, pipeline.ErrGuestNotBootable, err)
	}
	return fmt.Errorf("%s: %w", stage, err)
}

func (r *runner) outputPath(i int) string { return r.outputPathOf(i, len(r.job.Exports)) }

// outputPathOf is the output of disk i of n.
func (r *runner) outputPathOf(i, n int) string {
	if n == 1 {
		return filepath.Join(r.opt.OutputDir, r.job.Name+"."+r.job.Format)
	}
	return filepath.Join(r.opt.OutputDir, fmt.Sprintf("%s-disk%d.%s", r.job.Name, i, r.job.Format))
}

func (r *runner) convert(ctx context.Context) error {
	r.job.Outputs = nil
	for i, e := range r.job.Exports {
		out := r.outputPath(i)
		// A conversion killed earlier leaves its temporary file: remove it. An output under
		// its final name is complete (it is renamed into place only when done).
		stale, _ := filepath.Glob(filepath.Join(filepath.Dir(out), "."+filepath.Base(out)+".part-*"))
		for _, s := range stale {
			os.Remove(s)
		}
		if _, err := os.Stat(out); err == nil {
			if !r.opt.Resume {
				return fmt.Errorf("convert: %s exists", out)
			}
		} else {
			uri := fmt.Sprintf("nbd+unix:///%s?socket=%s", e, r.socket)
			err := convert.Run(ctx, uri, out, convert.Options{
				Format: r.job.Format, Compress: r.opt.Compress,
				Progress: func(p float64) {
					r.emit(Event{Stage: Convert, Status: "progress", Percent: p, Message: filepath.Base(out)})
				},
				Check: func(ctx context.Context, _ string) error { return r.verifyDisk(ctx, i) },
			})
			if err != nil {
				if errors.Is(err, syscall.ENOSPC) || strings.Contains(err.Error(), "No space left") {
					return fmt.Errorf("convert: %s: the output folder is full: %w", out, err)
				}
				return err
			}
		}
		r.job.Outputs = append(r.job.Outputs, out)
		if i < len(r.job.Disks) {
			r.job.Disks[i].Output = out
		}
	}
	return nil
}

// validate hands the converted disks to the output target: it writes the VM definition
// (recorded as the job's Domain), checks it and, asked to, boot-tests it.
func (r *runner) validate(ctx context.Context) error {
	t := r.opt.Target
	if t == nil {
		t = libvirt.New()
	}
	r.job.Target = t.Name()
	bt, canBoot := t.(target.BootTester)
	if r.opt.BootTest && !canBoot {
		return fmt.Errorf("validate: target %s cannot boot-test", t.Name())
	}
	in := target.Input{VM: *r.job.VM, Name: r.job.Name, Format: r.job.Format, Firmware: r.job.VM.Firmware,
		OutputDir: r.opt.OutputDir}
	if in.Firmware == "" {
		in.Firmware = "bios"
		if r.job.GuestFirmware == "uefi" {
			in.Firmware = "efi"
		}
	}
	in.KVM, _ = host.CheckKVM(ctx)
	for _, o := range r.job.Outputs {
		a, err := filepath.Abs(o)
		if err != nil {
			return fmt.Errorf("validate: %w", err)
		}
		in.Disks = append(in.Disks, a)
	}
	res, err := t.Write(ctx, in)
	if err != nil {
		return fmt.Errorf("validate: %w", err)
	}
	r.job.Domain = res.Definition
	if err := t.Validate(ctx, res); err != nil {
		return err
	}
	if !r.opt.BootTest {
		return nil
	}
	work, err := os.MkdirTemp(r.state, "boot-")
	if err != nil {
		return fmt.Errorf("validate: %w", err)
	}
	defer os.RemoveAll(work)
	boot, err := bt.BootTest(ctx, in, res, target.BootOptions{WorkDir: work, Timeout: r.opt.BootTimeout})
	r.job.Boot = &boot
	return err
}

// collectStats fills the byte counts from the exports.
func (r *runner) collectStats(ctx context.Context) {
	var fetched, overlay int64
	for i, e := range r.job.Exports {
		if in, err := r.be.GetExport(ctx, e); err == nil {
			fetched += in.Stats.FetchedBytes
			overlay += in.Stats.OverlayBytes
			if i < len(r.job.Disks) {
				d := &r.job.Disks[i]
				d.FetchedBytes = max(d.FetchedBytes, in.Stats.FetchedBytes)
				if in.Stats.OverlayBytes > 0 {
					d.OverlayBytes = in.Stats.OverlayBytes
				}
			}
		}
	}
	if fetched > r.job.FetchedBytes {
		r.job.FetchedBytes = fetched
	}
	if overlay > 0 {
		r.job.OverlayBytes = overlay
	}
	r.job.OutputBytes = 0
	for i, o := range r.job.Outputs {
		if st, err := os.Stat(o); err == nil {
			if sys, ok := st.Sys().(*syscall.Stat_t); ok {
				r.job.OutputBytes += sys.Blocks * 512
				if i < len(r.job.Disks) {
					r.job.Disks[i].OutputBytes = sys.Blocks * 512
				}
			}
		}
	}
}

// sampleStaging samples the disk use of the state folder until the returned stop is called.
func (r *runner) sampleStaging() (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			if n := DiskUse(filepath.Join(r.state, "state")); n > r.peak.Load() {
				r.peak.Store(n)
			}
			select {
			case <-done:
				return
			case <-time.After(time.Second):
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// DiskUse returns the allocated bytes (st_blocks) of the files under the given folders; files
// that vanish while they are walked, and missing folders, count as nothing.
func DiskUse(dirs ...string) int64 {
	var n int64
	for _, dir := range dirs {
		filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return nil
			}
			if info, err := d.Info(); err == nil {
				if st, ok := info.Sys().(*syscall.Stat_t); ok {
					n += st.Blocks * 512
				}
			}
			return nil
		})
	}
	return n
}

// safeName keeps [A-Za-z0-9._-] of a VM name for file names.
func safeName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			b[i] = '_'
		}
	}
	out := strings.Trim(string(b), "._")
	if out == "" {
		return "vm"
	}
	return out
}
