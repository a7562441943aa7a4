package store_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/h2kvm/h2kvm/store"
	"github.com/h2kvm/h2kvm/vfs"
	"github.com/h2kvm/h2kvm/vfs/cache"
	"github.com/h2kvm/h2kvm/vfs/overlay"
)

func openStore(t *testing.T, path string) *store.Store {
	t.Helper()
	s, err := store.Open(path, store.Options{LockTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Check(context.Background()); err != nil {
			t.Error(err)
		}
		s.Close()
	})
	return s
}

func TestSecondOpenIsLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	openStore(t, path)
	start := time.Now()
	_, err := store.Open(path, store.Options{LockTimeout: 300 * time.Millisecond})
	if !errors.Is(err, store.ErrLocked) {
		t.Fatalf("second open: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("second open took %v", d)
	}
	t.Log(err)
}

func TestCacheIndex(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, filepath.Join(t.TempDir(), "state.db"))
	ix := s.CacheIndex("https://esx/folder/a-flat.vmdk@etag1")
	l := cache.Layout{ChunkSize: 1 << 20, SourceSize: 10 << 20}
	if cs, err := ix.Load(ctx, l); err != nil || len(cs) != 0 {
		t.Fatalf("fresh load: %v %v", cs, err)
	}
	if err := ix.MarkPresent(ctx, []cache.ChunkInfo{{Index: 0, Seq: 5, Priority: true}, {Index: 3, Seq: 6}, {Index: 9, Seq: 7}}); err != nil {
		t.Fatal(err)
	}
	if err := ix.Touch(ctx, []cache.ChunkInfo{{Index: 3, Seq: 10}, {Index: 4, Seq: 11}}); err != nil {
		t.Fatal(err)
	}
	if err := ix.Evict(ctx, []int64{9, 100}); err != nil {
		t.Fatal(err)
	}
	got, err := ix.Load(ctx, l)
	want := []cache.ChunkInfo{{Index: 0, Seq: 5, Priority: true}, {Index: 3, Seq: 10}}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("load: %+v %v, want %+v", got, err, want)
	}
	ids, _ := s.Caches(ctx)
	if !slices.Equal(ids, []string{"https://esx/folder/a-flat.vmdk@etag1"}) {
		t.Errorf("caches: %q", ids)
	}
	// Another layout drops the records.
	if got, err := ix.Load(ctx, cache.Layout{ChunkSize: 1 << 19, SourceSize: 10 << 20}); err != nil || len(got) != 0 {
		t.Fatalf("load with other layout: %+v %v", got, err)
	}
	if err := s.DeleteCache(ctx, "https://esx/folder/a-flat.vmdk@etag1"); err != nil {
		t.Fatal(err)
	}
	if ids, _ := s.Caches(ctx); len(ids) != 0 {
		t.Errorf("caches after delete: %q", ids)
	}
}

// slowSource counts bytes read.
type slowSource struct {
	data []byte
	read atomic.Int64
}

func (s *slowSource) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if off >= int64(len(s.data)) {
		return 0, io.EOF
	}
	n := copy(p, s.data[off:])
	s.read.Add(int64(n))
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
func (s *slowSource) Size() int64  { return int64(len(s.data)) }
func (s *slowSource) Name() string { return "slow" }
func (s *slowSource) Close() error { return nil }

// TestCacheSurvivesRestart: a cache over the store, closed and the store reopened, serves what
// it fetched without fetching again.
func TestCacheSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	src := &slowSource{data: bytes.Repeat([]byte("0123456789abcdef"), 1<<18)} // 4 MiB
	cfg := cache.Config{Path: filepath.Join(dir, "c"), ChunkSize: 256 << 10, ReadAhead: -1}

	s, err := store.Open(filepath.Join(dir, "state.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Index = s.CacheIndex("src")
	c, err := cache.New(ctx, src, cfg)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 300<<10)
	if _, err := c.ReadAt(ctx, buf, 1<<20); err != nil {
		t.Fatal(err)
	}
	c.Close()
	s.Close()
	fetched := src.read.Load()

	s = openStore(t, filepath.Join(dir, "state.db"))
	cfg.Index = s.CacheIndex("src")
	c, err = cache.New(ctx, src, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := make([]byte, 300<<10)
	if _, err := c.ReadAt(ctx, got, 1<<20); err != nil || !bytes.Equal(got, buf) {
		t.Fatalf("read after restart: %v", err)
	}
	if src.read.Load() != fetched {
		t.Errorf("fetched %d bytes again after restart", src.read.Load()-fetched)
	}
}

func TestOverlayMap(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openStore(t, filepath.Join(dir, "state.db"))
	m := s.OverlayMap("vm1-disk0")
	if snap, err := m.Load(ctx); err != nil || snap.Layout != (overlay.Layout{}) || len(snap.Runs) != 0 {
		t.Fatalf("fresh: %+v %v", snap, err)
	}
	l := overlay.Layout{BlockSize: 65536, Size: 1 << 30}
	if g, err := m.Commit(ctx, l, []overlay.Run{{First: 1, End: 2, State: overlay.Data}, {First: 2, End: 3, State: overlay.Zeroed}, {First: 7, End: 8, State: overlay.Trimmed}}); err != nil || g != 1 {
		t.Fatalf("commit: %d %v", g, err)
	}
	if g, err := m.Commit(ctx, l, []overlay.Run{{First: 2, End: 3, State: overlay.Data}, {First: 7, End: 8, State: overlay.Absent}}); err != nil || g != 2 {
		t.Fatalf("commit: %d %v", g, err)
	}
	snap, err := m.Load(ctx)
	if err != nil || snap.Layout != l || snap.Generation != 2 ||
		!slices.Equal(snap.Runs, []overlay.Run{{First: 1, End: 3, State: overlay.Data}}) {
		t.Fatalf("load: %+v %v", snap, err)
	}
	// Through an Overlay: write, close (flushes), reopen.
	base := vfs.NewMemDevice(4 << 20)
	path := filepath.Join(dir, "ov")
	o, err := overlay.Open(ctx, base, overlay.Config{Path: path, Map: s.OverlayMap("vm2")})
	if err != nil {
		t.Fatal(err)
	}
	o.WriteAt(ctx, []byte("persisted"), 1000000)
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	o, err = overlay.Open(ctx, base, overlay.Config{Path: path, Map: s.OverlayMap("vm2")})
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 9)
	o.ReadAt(ctx, got, 1000000)
	o.Close()
	if string(got) != "persisted" {
		t.Errorf("overlay after reopen reads %q", got)
	}
	if err := m.Clear(ctx); err != nil {
		t.Fatal(err)
	}
	if snap, _ := m.Load(ctx); len(snap.Runs) != 0 || snap.Generation != 0 {
		t.Errorf("after clear: %+v", snap)
	}
}

func TestExportsAndJobs(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	created := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	recs := []store.ExportRecord{
		{Name: "web01-disk0", Source: "https://vc/folder/web01/web01.vmdk?dcPath=dc&dsName=ds", KeepOverlay: true, Created: created},
		{Name: "db01", Source: "/srv/db01.vmdk", ReadOnly: true, Created: created},
	}
	for _, r := range recs {
		if err := s.PutExport(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	type job struct {
		Stages map[string]string `json:"stages"`
	}
	if err := s.PutJob(ctx, "job-1", job{Stages: map[string]string{"FETCH": "ok"}}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s = openStore(t, path) // a restart
	got, err := s.Exports(ctx)
	if err != nil || len(got) != 2 || got[0] != recs[1] || got[1] != recs[0] {
		t.Fatalf("exports after restart: %+v %v", got, err)
	}
	if r, err := s.Export(ctx, "db01"); err != nil || r != recs[1] {
		t.Errorf("export db01: %+v %v", r, err)
	}
	if _, err := s.Export(ctx, "nope"); !errors.Is(err, vfs.ErrNotFound) {
		t.Errorf("missing export: %v", err)
	}
	var j job
	if err := s.Job(ctx, "job-1", &j); err != nil || j.Stages["FETCH"] != "ok" {
		t.Errorf("job: %+v %v", j, err)
	}
	if err := s.Job(ctx, "job-2", &j); !errors.Is(err, vfs.ErrNotFound) {
		t.Errorf("missing job: %v", err)
	}
	if ids, _ := s.Jobs(ctx); !slices.Equal(ids, []string{"job-1"}) {
		t.Errorf("jobs %q", ids)
	}
	s.DeleteExport(ctx, "db01")
	s.DeleteJob(ctx, "job-1")
	if got, _ := s.Exports(ctx); len(got) != 1 {
		t.Errorf("after delete: %+v", got)
	}
	if ids, _ := s.Jobs(ctx); len(ids) != 0 {
		t.Errorf("jobs after delete %q", ids)
	}
}

func TestConcurrentCommitsBatch(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, filepath.Join(t.TempDir(), "state.db"))
	l := overlay.Layout{BlockSize: 65536, Size: 1 << 20}
	errs := make(chan error, 40)
	for k := range 40 {
		go func() {
			m := s.OverlayMap(string(rune('a' + k%4)))
			_, err := m.Commit(ctx, l, []overlay.Run{{First: int64(k), End: int64(k) + 1, State: overlay.Data}})
			errs <- err
		}()
	}
	for range 40 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for k := range 4 {
		snap, err := s.OverlayMap(string(rune('a' + k))).Load(ctx)
		if err != nil || snap.Generation != 10 || len(snap.Runs) != 10 {
			t.Errorf("overlay %c: generation %d, %d runs, %v", 'a'+k, snap.Generation, len(snap.Runs), err)
		}
	}
}
