package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/h2kvm/h2kvm/internal/testenv"
)

// makeOVA packs a small streamOptimized disk with GNU tar and a manifest from sha256sum;
// badDigest changes one hex digit of the disk's entry. It returns the OVA and the disk's raw
// bytes as qemu-img reads them.
func makeOVA(t *testing.T, badDigest bool) (string, []byte) {
	t.Helper()
	testenv.NeedTool(t, "qemu-img", "qemu-io", "tar", "sha256sum")
	dir := t.TempDir()
	testenv.Run(t, dir, "qemu-img", "create", "-q", "-f", "raw", "d.raw", "4M")
	testenv.Run(t, dir, "qemu-io", "-f", "raw", "-c", "write -P 0x5a 1M 64k", "d.raw")
	testenv.Run(t, dir, "qemu-img", "convert", "-O", "vmdk", "-o", "subformat=streamOptimized", "d.raw", "web-disk1.vmdk")
	raw, err := os.ReadFile(filepath.Join(dir, "d.raw"))
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(filepath.Join(dir, "web-disk1.vmdk"))
	ovfXML := fmt.Sprintf(`<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData">
  <References><File ovf:href="web-disk1.vmdk" ovf:id="file1" ovf:size="%d"/></References>
  <DiskSection><Info>disks</Info><Disk ovf:capacity="4194304" ovf:capacityAllocationUnits="byte" ovf:diskId="vmdisk1" ovf:fileRef="file1"/></DiskSection>
  <VirtualSystem ovf:id="web"><Info>vm</Info><Name>web</Name>
    <VirtualHardwareSection><Info>hw</Info>
      <Item><rasd:InstanceID>1</rasd:InstanceID><rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>1</rasd:VirtualQuantity></Item>
      <Item><rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits><rasd:InstanceID>2</rasd:InstanceID><rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>256</rasd:VirtualQuantity></Item>
      <Item><rasd:Address>0</rasd:Address><rasd:InstanceID>3</rasd:InstanceID><rasd:ResourceType>6</rasd:ResourceType></Item>
      <Item><rasd:AddressOnParent>0</rasd:AddressOnParent><rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource><rasd:InstanceID>4</rasd:InstanceID><rasd:Parent>3</rasd:Parent><rasd:ResourceType>17</rasd:ResourceType></Item>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
`, fi.Size())
	if err := os.WriteFile(filepath.Join(dir, "web.ovf"), []byte(ovfXML), 0o644); err != nil {
		t.Fatal(err)
	}
	var mf strings.Builder
	for _, line := range strings.Split(strings.TrimSpace(testenv.Run(t, dir, "sha256sum", "web.ovf", "web-disk1.vmdk")), "\n") {
		sum, name, _ := strings.Cut(line, "  ")
		if badDigest && name == "web-disk1.vmdk" {
			flip := "0"
			if sum[0] == '0' {
				flip = "1"
			}
			sum = flip + sum[1:]
		}
		fmt.Fprintf(&mf, "SHA256(%s)= %s\n", name, sum)
	}
	if err := os.WriteFile(filepath.Join(dir, "web.mf"), []byte(mf.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	ova := filepath.Join(dir, "web.ova")
	testenv.Run(t, dir, "tar", "-cf", ova, "web.ovf", "web.mf", "web-disk1.vmdk")
	return ova, raw
}

func TestInfoOVAManifestState(t *testing.T) {
	ova, _ := makeOVA(t, false)
	code, out, errOut := runCLI(t, t.Context(), "info", ova)
	if code != 0 || !strings.Contains(out, "manifest: SHA256 ") || !strings.Contains(out, "not verified") {
		t.Fatalf("info: code %d\n%s\n%s", code, out, errOut)
	}
	code, out, errOut = runCLI(t, t.Context(), "info", "--verify-disks", ova)
	if code != 0 || !strings.Contains(out, ", verified (the whole disk was read)") {
		t.Fatalf("info --verify-disks: code %d\n%s\n%s", code, out, errOut)
	}
	bad, _ := makeOVA(t, true)
	if code, _, errOut := runCLI(t, t.Context(), "info", "--verify-disks", bad); code != 2 || !strings.Contains(errOut, "digest mismatch") {
		t.Fatalf("info --verify-disks on a bad manifest: code %d: %s", code, errOut)
	}
}

// TestMountVerifyOVAMember: mount --verify refuses an OVA member whose bytes do not match the
// manifest (exit 2, nothing mounted) and mounts a matching one, whose disk.raw equals qemu-img's
// reading of the disk.
func TestMountVerifyOVAMember(t *testing.T) {
	testenv.NeedTool(t, "fusermount3")
	bad, _ := makeOVA(t, true)
	mnt := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	code, _, errOut := runCLI(t, ctx, "mount", "--verify", "ova:"+bad+"#web-disk1.vmdk", mnt)
	if code != 2 || !strings.Contains(errOut, "does not match the manifest") {
		t.Fatalf("mount --verify of a bad member: code %d: %s", code, errOut)
	}
	if ents, _ := os.ReadDir(mnt); len(ents) != 0 {
		t.Fatalf("something is mounted: %v", ents)
	}

	good, raw := makeOVA(t, false)
	mctx, stop := context.WithCancel(ctx)
	done := make(chan int, 1)
	var errb string
	go func() {
		c, _, e := runCLI(t, mctx, "mount", "--verify", "--name", "web", "ova:"+good+"#web-disk1.vmdk", mnt)
		errb = e
		done <- c
	}()
	file := filepath.Join(mnt, "web", "disk.raw")
	var got []byte
	for i := 0; i < 200; i++ {
		if b, err := os.ReadFile(file); err == nil && len(b) == len(raw) {
			got = b
			break
		}
		select {
		case c := <-done:
			t.Fatalf("mount ended with %d: %s", c, errb)
		case <-time.After(100 * time.Millisecond):
		}
	}
	stop()
	if c := <-done; c != 0 {
		t.Errorf("mount exit %d: %s", c, errb)
	}
	if !bytes.Equal(got, raw) {
		t.Fatalf("disk.raw (%d bytes) differs from the disk (%d bytes)", len(got), len(raw))
	}
	if !strings.Contains(errb, "matches the OVA's manifest") {
		t.Errorf("mount log does not say the member was verified:\n%s", errb)
	}
}
