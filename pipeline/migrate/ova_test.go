package migrate

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/h2kvm/h2kvm/fixers"
	"github.com/h2kvm/h2kvm/internal/testenv"
	"github.com/h2kvm/h2kvm/pipeline/resolve/ovf"
)

// ovaDescriptor is an OVF for one streamOptimized disk.
func ovaDescriptor(disk string, size, capacity int64) string {
	return fmt.Sprintf(`<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData">
  <References><File ovf:href="%[1]s" ovf:id="file1" ovf:size="%[2]d"/></References>
  <DiskSection><Info>disks</Info>
    <Disk ovf:capacity="%[3]d" ovf:capacityAllocationUnits="byte" ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
  <VirtualSystem ovf:id="stamp">
    <Info>A virtual machine</Info>
    <Name>stamp</Name>
    <VirtualHardwareSection>
      <Info>hw</Info>
      <Item><rasd:InstanceID>1</rasd:InstanceID><rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>1</rasd:VirtualQuantity></Item>
      <Item><rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits><rasd:InstanceID>2</rasd:InstanceID><rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>512</rasd:VirtualQuantity></Item>
      <Item><rasd:Address>0</rasd:Address><rasd:InstanceID>3</rasd:InstanceID><rasd:ResourceSubType>VirtualSCSI</rasd:ResourceSubType><rasd:ResourceType>6</rasd:ResourceType></Item>
      <Item><rasd:AddressOnParent>0</rasd:AddressOnParent><rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource><rasd:InstanceID>4</rasd:InstanceID><rasd:Parent>3</rasd:Parent><rasd:ResourceType>17</rasd:ResourceType></Item>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
`, disk, size, capacity)
}

// ovaCase says how to spoil an OVA before packing it.
type ovaCase int

const (
	ovaIntact      ovaCase = iota
	ovaBadManifest         // one hex digit of the disk's digest changed in the .mf
	ovaDiskAltered         // a byte of the disk changed after the manifest was written
)

// buildOVA packs the stamp guest as an OVA with GNU tar and a manifest written by sha256sum,
// spoiled as c says.
func buildOVA(t *testing.T, dir, vmdk string, c ovaCase) string {
	t.Helper()
	testenv.NeedTool(t, "tar", "sha256sum", "qemu-img")
	pkg := filepath.Join(dir, "pkg")
	os.MkdirAll(pkg, 0o755)
	disk := filepath.Join(pkg, "stamp-disk1.vmdk")
	testenv.Run(t, pkg, "qemu-img", "convert", "-O", "vmdk", "-o", "subformat=streamOptimized", vmdk, disk)
	fi, err := os.Stat(disk)
	if err != nil {
		t.Fatal(err)
	}
	capacity := int64(64 << 20)
	if err := os.WriteFile(filepath.Join(pkg, "stamp.ovf"), []byte(ovaDescriptor("stamp-disk1.vmdk", fi.Size(), capacity)), 0o644); err != nil {
		t.Fatal(err)
	}
	// sha256sum prints "HEX  NAME"; an OVF manifest line is "SHA256(NAME)= HEX".
	var mf strings.Builder
	for _, line := range strings.Split(strings.TrimSpace(testenv.Run(t, pkg, "sha256sum", "stamp.ovf", "stamp-disk1.vmdk")), "\n") {
		hex, name, _ := strings.Cut(line, "  ")
		if c == ovaBadManifest && name == "stamp-disk1.vmdk" {
			flip := "0"
			if hex[0] == '0' {
				flip = "1"
			}
			hex = flip + hex[1:]
		}
		fmt.Fprintf(&mf, "SHA256(%s)= %s\n", name, hex)
	}
	if err := os.WriteFile(filepath.Join(pkg, "stamp.mf"), []byte(mf.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if c == ovaDiskAltered {
		// Byte 500 is padding of the sparse header: readers ignore it, digests do not.
		f, err := os.OpenFile(disk, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt([]byte{0x5a}, 500); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	ova := filepath.Join(dir, "stamp.ova")
	testenv.Run(t, pkg, "tar", "--format=ustar", "-cf", ova, "stamp.ovf", "stamp.mf", "stamp-disk1.vmdk")
	return ova
}

// countingServer serves files with Range support and counts the body bytes sent.
func countingServer(t *testing.T, dir string) (*httptest.Server, *atomic.Int64) {
	var sent atomic.Int64
	fs := http.FileServer(http.Dir(dir))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fs.ServeHTTP(countWriter{w, &sent}, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &sent
}

type countWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (c countWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// TestOVAManifestChecked: an OVA served over HTTP is checked against its manifest by default,
// from the bytes the migration read, before any output gets its final name.
func TestOVAManifestChecked(t *testing.T) {
	if testing.Short() {
		t.Skip("launches the libguestfs appliance")
	}
	t.Setenv("LIBGUESTFS_BACKEND", "direct")
	vmdk := stampGuest(t, t.TempDir())
	run := func(t *testing.T, c ovaCase, noVerify bool) (*Job, error, string, int64, int64) {
		dir := t.TempDir()
		ova := buildOVA(t, dir, vmdk, c)
		fi, _ := os.Stat(ova)
		srv, sent := countingServer(t, dir)
		out := filepath.Join(t.TempDir(), "out")
		job, err := Run(t.Context(), Options{
			Source: srv.URL + "/stamp.ova", OutputDir: out, Name: "stamp",
			Fixers: []fixers.Fixer{stampFixer{}}, Target: &fakeTarget{}, NoVerifyDisks: noVerify,
		})
		return job, err, out, sent.Load(), fi.Size()
	}

	t.Run("intact", func(t *testing.T) {
		job, err, out, sent, size := run(t, ovaIntact, false)
		if err != nil {
			t.Fatal(err)
		}
		if len(job.Disks) != 1 || job.Disks[0].Manifest == nil || !job.Disks[0].Manifest.Verified {
			t.Fatalf("disk manifest check: %+v", job.Disks)
		}
		chk := job.Disks[0].Manifest
		ratio := float64(sent) / float64(size)
		t.Logf("whole migration fetched %d bytes = %.3f x the OVA's %d; the check fetched %d more", sent, ratio, size, chk.ExtraFetchedBytes)
		if ratio > 1.05 {
			t.Errorf("fetched %.3f x the OVA", ratio)
		}
		if _, err := os.Stat(filepath.Join(out, "stamp-disk0.qcow2")); err != nil && len(job.Outputs) == 0 {
			t.Errorf("no output: %v", err)
		}
		md, _ := os.ReadFile(filepath.Join(out, "report.md"))
		if !strings.Contains(string(md), "## Manifest digests") || !strings.Contains(string(md), "verified") {
			t.Errorf("report.md says nothing of the manifest:\n%s", md)
		}
	})
	for _, c := range []struct {
		name string
		c    ovaCase
	}{{"bad-manifest", ovaBadManifest}, {"disk-altered", ovaDiskAltered}} {
		t.Run(c.name, func(t *testing.T) {
			job, err, out, _, _ := run(t, c.c, false)
			if !errors.Is(err, ovf.ErrDigest) || !strings.Contains(err.Error(), "stamp-disk1.vmdk") {
				t.Fatalf("migrate: %v, want a digest mismatch naming the disk", err)
			}
			if job == nil || job.Stages[Validate].Status == "done" {
				t.Fatalf("job %+v went on", job)
			}
			finals, _ := filepath.Glob(filepath.Join(out, "*.qcow2"))
			parts, _ := filepath.Glob(filepath.Join(out, ".*.part-*"))
			if len(finals) != 0 || len(parts) != 1 {
				t.Errorf("outputs under final names %v, temporary %v; want none and one", finals, parts)
			}
			if chk := job.Disks[0].Manifest; chk == nil || chk.Verified || chk.Actual == "" || chk.Actual == chk.Expected {
				t.Errorf("disk manifest check %+v", chk)
			}
		})
	}
	t.Run("no-verify", func(t *testing.T) {
		job, err, _, _, _ := run(t, ovaBadManifest, true)
		if err != nil {
			t.Fatalf("--no-verify-disks: %v", err)
		}
		warned := false
		for _, w := range job.Warnings {
			warned = warned || strings.Contains(w, "not verified")
		}
		if !warned || job.Disks[0].Manifest != nil {
			t.Errorf("warnings %q, manifest check %+v", job.Warnings, job.Disks[0].Manifest)
		}
	})
}
