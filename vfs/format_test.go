package vfs_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/h2kvm/h2kvm/vfs"
)

// fakeFormat is a test-only format: a file starting with "FAKEDISK" is a disk of the bytes
// that follow.
type fakeFormat struct{}

var _ vfs.Format = fakeFormat{}

const fakeMagic = "FAKEDISK"

func (fakeFormat) Name() string { return "fake" }

func (fakeFormat) Detect(ctx context.Context, src vfs.Source) (bool, error) {
	if src.Size() < int64(len(fakeMagic)) {
		return false, nil
	}
	b := make([]byte, len(fakeMagic))
	if err := vfs.ReadFull(ctx, src, b, 0); err != nil {
		return false, err
	}
	return string(b) == fakeMagic, nil
}

func (fakeFormat) Open(ctx context.Context, o vfs.Opener, name string, opt vfs.OpenOptions) (vfs.Disk, error) {
	src, err := o.Open(ctx, name)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	b := make([]byte, src.Size()-int64(len(fakeMagic)))
	if err := vfs.ReadFull(ctx, src, b, int64(len(fakeMagic))); err != nil {
		return nil, err
	}
	m := vfs.NewMemDevice(int64(len(b)))
	if _, err := m.WriteAt(ctx, b, 0); err != nil {
		return nil, err
	}
	return &fakeDisk{MemDevice: m, name: name}, nil
}

type fakeDisk struct {
	*vfs.MemDevice
	name string
}

func (d *fakeDisk) Info(ctx context.Context) (vfs.ChainInfo, error) {
	return vfs.ChainInfo{File: d.name, Format: "fake", VirtualSize: d.Size(), Links: []vfs.LinkInfo{{File: d.name, VirtualSize: d.Size()}}}, nil
}

func (d *fakeDisk) Close() error { return nil }

// neverFormat recognises nothing.
type neverFormat struct{}

func (neverFormat) Name() string                                     { return "never" }
func (neverFormat) Detect(context.Context, vfs.Source) (bool, error) { return false, nil }
func (neverFormat) Open(context.Context, vfs.Opener, string, vfs.OpenOptions) (vfs.Disk, error) {
	return nil, errors.New("never opened")
}

// countingOpener counts the opens of each name and the sources left open.
type countingOpener struct {
	vfs.LocalOpener
	mu    sync.Mutex
	opens map[string]int
	open  int
}

func (o *countingOpener) Open(ctx context.Context, name string) (vfs.Source, error) {
	src, err := o.LocalOpener.Open(ctx, name)
	if err != nil {
		return nil, err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.opens == nil {
		o.opens = map[string]int{}
	}
	o.opens[name]++
	o.open++
	return &countedSource{Source: src, o: o}, nil
}

type countedSource struct {
	vfs.Source
	o *countingOpener
}

func (s *countedSource) Close() error {
	s.o.mu.Lock()
	s.o.open--
	s.o.mu.Unlock()
	return s.Source.Close()
}

func writeFile(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestOpenDiskPicksRegisteredFormat(t *testing.T) {
	ctx := context.Background()
	payload := bytes.Repeat([]byte("0123456789abcdef"), 64)
	p := writeFile(t, "disk.fake", append([]byte(fakeMagic), payload...))
	o := &countingOpener{}
	d, err := vfs.OpenDisk(ctx, []vfs.Format{neverFormat{}, fakeFormat{}}, o, p, vfs.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, ok := d.(*fakeDisk); !ok {
		t.Fatalf("OpenDisk returned %T, want the fake format's disk", d)
	}
	got := make([]byte, d.Size())
	if _, err := d.ReadAt(ctx, got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatal("fake disk reads wrong bytes")
	}
	ci, err := d.Info(ctx)
	if err != nil || ci.Format != "fake" {
		t.Fatalf("Info = %+v, %v", ci, err)
	}
	// The sniffed source is reused by the format's Open: one open, none left.
	if o.opens[p] != 1 || o.open != 0 {
		t.Errorf("%s opened %d times, %d sources left open; want 1 and 0", p, o.opens[p], o.open)
	}
}

func TestOpenDiskUnknownFormat(t *testing.T) {
	ctx := context.Background()
	for name, b := range map[string][]byte{
		"short":  []byte("FAKE"),
		"zeros":  make([]byte, 4096),
		"text":   []byte("hello, world\n"),
		"empty":  nil,
		"almost": []byte("FAKEDIS!xxxxxxxx"),
	} {
		t.Run(name, func(t *testing.T) {
			p := writeFile(t, name+".img", b)
			o := &countingOpener{}
			d, err := vfs.OpenDisk(ctx, []vfs.Format{neverFormat{}, fakeFormat{}}, o, p, vfs.OpenOptions{})
			if err == nil {
				d.Close()
				t.Fatal("opened a file of no format")
			}
			if !errors.Is(err, vfs.ErrUnknownFormat) || !errors.Is(err, vfs.ErrUnsupported) {
				t.Errorf("error %v does not wrap ErrUnknownFormat and ErrUnsupported", err)
			}
			if !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "never, fake") {
				t.Errorf("error %q does not name the file and the formats tried", err)
			}
			if o.open != 0 {
				t.Errorf("%d sources left open", o.open)
			}
		})
	}
}

func TestOpenDiskNoFormats(t *testing.T) {
	p := writeFile(t, "disk.fake", []byte(fakeMagic+"x"))
	_, err := vfs.OpenDisk(context.Background(), nil, vfs.LocalOpener{}, p, vfs.OpenOptions{})
	if !errors.Is(err, vfs.ErrUnknownFormat) {
		t.Fatalf("error %v, want ErrUnknownFormat", err)
	}
}

func TestOpenDiskMissingFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "nope.img")
	_, err := vfs.OpenDisk(context.Background(), []vfs.Format{fakeFormat{}}, vfs.LocalOpener{}, p, vfs.OpenOptions{})
	if !errors.Is(err, vfs.ErrNotFound) || errors.Is(err, vfs.ErrUnknownFormat) {
		t.Fatalf("error %v, want ErrNotFound only", err)
	}
}

// TestOpenDiskOpenErrorCloses checks that a format whose Open fails without taking the
// sniffed source leaves nothing open.
func TestOpenDiskOpenErrorCloses(t *testing.T) {
	p := writeFile(t, "disk.fake", []byte(fakeMagic+"x"))
	o := &countingOpener{}
	_, err := vfs.OpenDisk(context.Background(), []vfs.Format{failingFormat{}}, o, p, vfs.OpenOptions{})
	if err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("error %v, want the format's", err)
	}
	if o.open != 0 {
		t.Errorf("%d sources left open", o.open)
	}
}

type failingFormat struct{ fakeFormat }

func (failingFormat) Open(context.Context, vfs.Opener, string, vfs.OpenOptions) (vfs.Disk, error) {
	return nil, errors.New("refused")
}
