package nbdserve

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/h2kvm/h2kvm/internal/testenv"
	"github.com/h2kvm/h2kvm/vfs"
)

// These tests drive the server with real NBD clients: libnbd's nbdinfo and nbdcopy, qemu-img
// and qemu-io.

func ptr[T any](v T) *T { return &v }

func TestNbdinfoJSON(t *testing.T) {
	testenv.ToolPath(t, "nbdinfo")
	ts := startServer(t, Options{})
	if err := ts.AddExport("ro", newTestDevice(t), ExportOptions{ReadOnly: true, Description: "read-only disk"}); err != nil {
		t.Fatal(err)
	}
	if err := ts.AddExport("rw", vfs.NewMemDevice(1<<20), ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	type info struct {
		Protocol   string `json:"protocol"`
		Structured bool   `json:"structured"`
		Exports    []struct {
			Name         string   `json:"export-name"`
			Description  string   `json:"description"`
			Contexts     []string `json:"contexts"`
			ReadOnly     bool     `json:"is_read_only"`
			CanCache     bool     `json:"can_cache"`
			CanDF        bool     `json:"can_df"`
			CanFastZero  bool     `json:"can_fast_zero"`
			CanFlush     bool     `json:"can_flush"`
			CanFUA       bool     `json:"can_fua"`
			CanMultiConn bool     `json:"can_multi_conn"`
			CanTrim      bool     `json:"can_trim"`
			CanZero      bool     `json:"can_zero"`
			MinBlock     int64    `json:"block_size_minimum"`
			PrefBlock    int64    `json:"block_size_preferred"`
			MaxBlock     int64    `json:"block_size_maximum"`
			Size         int64    `json:"export-size"`
		} `json:"exports"`
	}
	get := func(export string) info {
		out := run(t, time.Minute, "nbdinfo", "--json", ts.uri(export))
		var in info
		if err := json.Unmarshal([]byte(out), &in); err != nil {
			t.Fatalf("nbdinfo output: %v\n%s", err, out)
		}
		if len(in.Exports) != 1 {
			t.Fatalf("nbdinfo: %d exports\n%s", len(in.Exports), out)
		}
		t.Logf("nbdinfo %s:\n%s", export, out)
		return in
	}
	ro := get("ro")
	e := ro.Exports[0]
	if ro.Protocol != "newstyle-fixed" || !ro.Structured {
		t.Errorf("protocol %q structured %v", ro.Protocol, ro.Structured)
	}
	if e.Name != "ro" || e.Description != "read-only disk" || e.Size != testDevSize {
		t.Errorf("name %q description %q size %d", e.Name, e.Description, e.Size)
	}
	if !e.ReadOnly || !e.CanMultiConn || !e.CanFlush || !e.CanCache || !e.CanDF || e.CanTrim || e.CanZero || e.CanFUA {
		t.Errorf("read-only export flags wrong: %+v", e)
	}
	if e.MinBlock != 1 || e.PrefBlock != 4096 || e.MaxBlock != 32<<20 {
		t.Errorf("block sizes %d/%d/%d, want 1/4096/32M", e.MinBlock, e.PrefBlock, e.MaxBlock)
	}
	if fmt.Sprint(e.Contexts) != "[base:allocation qemu:allocation-depth]" {
		t.Errorf("contexts %v", e.Contexts)
	}

	rw := get("rw").Exports[0]
	if rw.ReadOnly || rw.CanMultiConn || !rw.CanTrim || !rw.CanZero || !rw.CanFUA || rw.CanFastZero || rw.Size != 1<<20 {
		t.Errorf("writable export flags wrong: %+v", rw)
	}

	list := run(t, time.Minute, "nbdinfo", "--list", "--json", ts.uri(""))
	var l info
	if err := json.Unmarshal([]byte(list), &l); err != nil {
		t.Fatalf("nbdinfo --list: %v\n%s", err, list)
	}
	if len(l.Exports) != 2 || l.Exports[0].Name != "ro" || l.Exports[1].Name != "rw" {
		t.Errorf("nbdinfo --list:\n%s", list)
	}
}

type mapEntry struct {
	Offset int64  `json:"offset"`
	Length int64  `json:"length"`
	Type   uint32 `json:"type"`
}

// expectedMap computes what a correct server reports for dev in a context, merged.
func expectedMap(t *testing.T, dev vfs.Device, id uint32) []mapEntry {
	exts, err := extentsCovering(context.Background(), dev, 0, dev.Size(), 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []mapEntry
	for _, x := range exts {
		f := contextFlags(id, x)
		if n := len(out); n > 0 && out[n-1].Type == f {
			out[n-1].Length += x.Len
			continue
		}
		out = append(out, mapEntry{x.Off, x.Len, f})
	}
	return out
}

func TestNbdinfoMap(t *testing.T) {
	testenv.ToolPath(t, "nbdinfo")
	ts := startServer(t, Options{})
	dev := depthDevice{MemDevice: newTestDevice(t), depthAt: func(off int64) int { return int(off>>20) % 3 }}
	if err := ts.AddExport("chain", dev, ExportOptions{ReadOnly: true}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ctx string
		id  uint32
	}{{"base:allocation", ctxBaseAllocation}, {"qemu:allocation-depth", ctxAllocationDepth}} {
		out := run(t, time.Minute, "nbdinfo", "--map="+tc.ctx, "--json", ts.uri("chain"))
		var got []mapEntry
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("%s: %v\n%s", tc.ctx, err, out)
		}
		want := expectedMap(t, dev, tc.id)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("nbdinfo --map=%s:\n got %v\nwant %v", tc.ctx, got, want)
		}
		t.Logf("%s: %v", tc.ctx, got)
	}
	// Sanity check of the expectations themselves against the known layout.
	base := expectedMap(t, dev, ctxBaseAllocation)
	if base[0] != (mapEntry{0, 1 << 20, 0}) || base[1] != (mapEntry{1 << 20, 1 << 20, stateZero}) ||
		base[2] != (mapEntry{2 << 20, 2 << 20, stateHole | stateZero}) {
		t.Errorf("unexpected base:allocation map %v", base)
	}
}

func TestNbdcopyToFile(t *testing.T) {
	testenv.ToolPath(t, "nbdcopy")
	ts := startServer(t, Options{})
	dev := newTestDevice(t)
	if err := ts.AddExport("ro", dev, ExportOptions{ReadOnly: true}); err != nil {
		t.Fatal(err)
	}
	want := deviceBytes(t, dev)
	for _, args := range [][]string{
		{"--connections=1", "--requests=1"},
		{"--connections=4", "--requests=64", "--request-size=65536"},
		{"--connections=4", "--requests=16", "--request-size=33554432"},
	} {
		out := filepath.Join(t.TempDir(), "out.raw")
		run(t, time.Minute, "nbdcopy", append(args, ts.uri("ro"), out)...)
		got, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("nbdcopy %v: bytes differ from the device", args)
		}
	}
	st, err := ts.Stats("ro")
	if err != nil {
		t.Fatal(err)
	}
	if st.Requests == 0 || st.BytesRead == 0 || st.Errors != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestNbdcopyIntoWritable copies a file into a writable multi-conn export over 4 connections.
func TestNbdcopyIntoWritable(t *testing.T) {
	testenv.ToolPath(t, "nbdcopy")
	ts := startServer(t, Options{})
	src := newTestDevice(t)
	want := deviceBytes(t, src)
	in := filepath.Join(t.TempDir(), "in.raw")
	if err := os.WriteFile(in, want, 0o600); err != nil {
		t.Fatal(err)
	}
	dst := vfs.NewMemDevice(testDevSize)
	fillRandom(t, dst, 0, testDevSize, 99) // garbage that must be overwritten or zeroed
	if err := ts.AddExport("rw", dst, ExportOptions{MultiConn: ptr(true)}); err != nil {
		t.Fatal(err)
	}
	run(t, time.Minute, "nbdcopy", "--connections=4", "--requests=32", "--flush", in, ts.uri("rw"))
	if !bytes.Equal(deviceBytes(t, dst), want) {
		t.Fatal("device differs from the copied file")
	}
	if st, _ := ts.Stats("rw"); st.BytesWritten == 0 || st.Errors != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestQemuImgConvert(t *testing.T) {
	testenv.ToolPath(t, "qemu-img")
	ts := startServer(t, Options{})
	// A sparse 256 MiB device with 1.1 MiB of data.
	dev := vfs.NewMemDevice(256 << 20)
	fillRandom(t, dev, 0, 1<<20, 7)
	fillRandom(t, dev, 100<<20, 100<<10, 8)
	if err := dev.Zero(context.Background(), 50<<20, 10<<20); err != nil {
		t.Fatal(err)
	}
	if err := ts.AddExport("disk", dev, ExportOptions{ReadOnly: true}); err != nil {
		t.Fatal(err)
	}
	want := deviceBytes(t, dev)
	dir := t.TempDir()
	raw := filepath.Join(dir, "out.raw")
	run(t, 2*time.Minute, "qemu-img", "convert", "-f", "raw", "-O", "raw", ts.uri("disk"), raw)
	got, err := os.ReadFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("qemu-img convert -O raw: bytes differ from the device")
	}
	qcow := filepath.Join(dir, "out.qcow2")
	run(t, 2*time.Minute, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", ts.uri("disk"), qcow)
	st, err := os.Stat(qcow)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() > 4<<20 {
		t.Errorf("qcow2 of a device with 1.1 MiB of data is %d bytes: holes were written", st.Size())
	}
	run(t, time.Minute, "qemu-img", "compare", "-f", "qcow2", "-F", "raw", qcow, raw)
	// qemu-img map sees the allocation through base:allocation.
	out := run(t, time.Minute, "qemu-img", "map", "--output=json", "-f", "raw", ts.uri("disk"))
	var m []struct {
		Start, Length int64
		Data, Zero    bool
	}
	// Zero extents are "data": true, "zero": true for qemu (allocated zeros).
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("qemu-img map: %v\n%s", err, out)
	}
	var data int64
	for _, e := range m {
		if e.Data && !e.Zero {
			data += e.Length
		}
	}
	if data != 1<<20+100<<10 {
		t.Errorf("qemu-img map reports %d data bytes, want %d:\n%s", data, 1<<20+100<<10, out)
	}
}

func TestQemuIOWritable(t *testing.T) {
	testenv.ToolPath(t, "qemu-io")
	ts := startServer(t, Options{})
	dev := vfs.NewMemDevice(4 << 20)
	fillRandom(t, dev, 0, 4<<20, 5)
	if err := ts.AddExport("rw", dev, ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := ts.AddExport("ro", newTestDevice(t), ExportOptions{ReadOnly: true}); err != nil {
		t.Fatal(err)
	}
	out := run(t, time.Minute, "qemu-io", "-f", "raw",
		"-c", "write -P 0xab 0 64k",
		"-c", "write -P 0xcd -f 70000 1000", // FUA, unaligned
		"-c", "read -P 0xab 0 64k",
		"-c", "write -z 1M 64k", // WRITE_ZEROES with NO_HOLE
		"-c", "write -z -u 2M 64k", // WRITE_ZEROES that may punch holes
		"-c", "discard 3M 64k",
		"-c", "read -P 0 1M 64k",
		"-c", "flush",
		ts.uri("rw"))
	t.Log(out)
	got := deviceBytes(t, dev)
	check := func(off, n int, b byte) {
		t.Helper()
		for i := off; i < off+n; i++ {
			if got[i] != b {
				t.Fatalf("byte %d is %#x, want %#x", i, got[i], b)
			}
		}
	}
	check(0, 64<<10, 0xab)
	check(70000, 1000, 0xcd)
	check(1<<20, 64<<10, 0)
	check(2<<20, 64<<10, 0)
	check(3<<20, 64<<10, 0)
	kind := func(off int64) vfs.ExtentKind {
		x, err := dev.Extents(context.Background(), off, 1)
		if err != nil {
			t.Fatal(err)
		}
		return x[0].Kind
	}
	if k := kind(1 << 20); k != vfs.Zero {
		t.Errorf("after write -z: %v, want zero", k)
	}
	if k := kind(2 << 20); k != vfs.Hole {
		t.Errorf("after write -z -u: %v, want hole", k)
	}
	if k := kind(3 << 20); k != vfs.Hole {
		t.Errorf("after discard: %v, want hole", k)
	}
	st, _ := ts.Stats("rw")
	if st.BytesWritten != 64<<10+1000 {
		t.Errorf("bytes written %d", st.BytesWritten)
	}

	// Writes to a read-only export are refused (qemu refuses to open it read-write; the
	// server-side EPERM is covered by TestBadRequests).
	if out, err := runErr(time.Minute, "qemu-io", "-f", "raw", "-c", "write -P 1 0 4k", ts.uri("ro")); err == nil {
		t.Errorf("write to read-only export succeeded:\n%s", out)
	}
	if before := newTestDevice(t); !bytes.Equal(deviceBytes(t, before)[:4096], deviceBytes(t, ts.lookup("ro").dev)[:4096]) {
		t.Error("read-only export changed")
	}
}
