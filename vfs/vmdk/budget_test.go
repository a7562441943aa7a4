package vmdk

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/h2kvm/h2kvm/vfs"
)

// TestMetadataBudget checks that Options.MetadataBudget bounds what a chain's directories and
// stream maps may take, and that the refusal says how to raise it.
func TestMetadataBudget(t *testing.T) {
	ctx := context.Background()
	if b := newMetaBudget(0); b.max != DefaultMetadataBudget || DefaultMetadataBudget != 256<<20 {
		t.Errorf("default budget %d, want 256 MiB", b.max)
	}
	for _, tc := range []struct {
		name   string
		o      vfs.Opener
		budget int64
		ok     bool
	}{
		// 40 directories of 256 KiB: 10 MiB.
		{"descriptor-40-extents-default", manyExtents(65536), 0, true},
		{"descriptor-40-extents-4MiB", manyExtents(65536), 4 << 20, false},
		// 16 Ki grains found by the marker scan: 256 KiB.
		{"stream-no-footer-default", &padOpener{files: map[string]padFile{"d/disk.vmdk": markerStream(16 << 10)}}, 0, true},
		{"stream-no-footer-128KiB", &padOpener{files: map[string]padFile{"d/disk.vmdk": markerStream(16 << 10)}}, 128 << 10, false},
		{"cowd-1MiB", &padOpener{files: map[string]padFile{"d/disk.vmdk": sharedTableCOWD(1 << 20)}}, 1 << 20, false},
		{"sesparse-1MiB", &padOpener{files: map[string]padFile{"d/disk.vmdk": seSparseImage(MaxCapacity / esxSector)}}, 1 << 20, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Open(ctx, tc.o, "d/disk.vmdk", Options{MetadataBudget: tc.budget})
			if tc.ok {
				if err != nil {
					t.Fatal(err)
				}
				c.Close()
				return
			}
			if err == nil {
				c.Close()
				t.Fatal("opened past the budget")
			}
			if !errors.Is(err, vfs.ErrUnsupported) || !strings.Contains(err.Error(), "MetadataBudget") || !strings.Contains(err.Error(), "d/") {
				t.Errorf("error %q: want ErrUnsupported naming the file and Options.MetadataBudget", err)
			}
		})
	}
}

// fuzzCorpus is testdata/fuzz/FuzzOpenImage: the images of issue 15 as (top, every other
// file, pad in 64 KiB units) inputs.
func fuzzCorpus() map[string][]any {
	pad := func(f padFile) uint16 { return uint16((f.size + fuzzPadUnit - 1) / fuzzPadUnit) }
	ext := bigDirectoryExtent()
	se := seSparseImage(MaxCapacity/esxSector + 8)
	cowd := cowdImage(1, esxMaxDirEntries)
	return map[string][]any{
		"issue15-descriptor-40-extents":        {manyExtentsDescriptor(40, 65536), ext.head, pad(ext)},
		"issue15-descriptor-40-extents-2GiB":   {manyExtentsDescriptor(40, 4<<20), ext.head, pad(ext)},
		"issue15-sesparse-past-MaxCapacity":    {se.head, []byte(nil), pad(se)},
		"issue15-cowd-512B-32Mi-entries":       {cowd.head, []byte(nil), pad(cowd)},
		"issue15-stream-no-footer-many-tables": {markerStream(64).head, []byte(nil), uint16(0)},
		"issue15-cowd-shared-table":            {sharedTableCOWD(4096).head, []byte(nil), uint16(0)},
	}
}

// TestWriteFuzzCorpus rewrites testdata/fuzz/FuzzOpenImage when H2KVM_WRITE_FUZZ_CORPUS=1, and
// otherwise checks that the files there are the ones fuzzCorpus generates.
func TestWriteFuzzCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzOpenImage")
	write := os.Getenv("H2KVM_WRITE_FUZZ_CORPUS") == "1"
	if write {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, args := range fuzzCorpus() {
		var b strings.Builder
		b.WriteString("go test fuzz v1\n")
		for _, a := range args {
			switch v := a.(type) {
			case []byte:
				fmt.Fprintf(&b, "[]byte(%q)\n", v)
			case uint16:
				fmt.Fprintf(&b, "uint16(%d)\n", v)
			}
		}
		p := filepath.Join(dir, name)
		if write {
			if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(p)
		if err != nil || string(got) != b.String() {
			t.Errorf("%s is missing or stale (%v): run H2KVM_WRITE_FUZZ_CORPUS=1 go test -run TestWriteFuzzCorpus ./vfs/vmdk", p, err)
		}
	}
}
