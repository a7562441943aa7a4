package resolve

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/h2kvm/h2kvm/vfs"
	"github.com/h2kvm/h2kvm/vfs/vmdk"
)

func run(t testing.TB, dir string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %v\n%s", args, err, out)
	}
	return out
}

// rawOf is qemu-img's reading of a disk image.
func rawOf(t *testing.T, file string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "ref.raw")
	run(t, "", "qemu-img", "convert", "-O", "raw", file, out)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// readChain opens name through o with vmdk.Open and reads the whole device.
func readChain(t *testing.T, o vfs.Opener, name string) ([]byte, *vmdk.Chain, error) {
	t.Helper()
	ctx := context.Background()
	c, err := vmdk.Open(ctx, o, name, vmdk.Options{})
	if err != nil {
		return nil, nil, err
	}
	buf := make([]byte, c.Size())
	for off := int64(0); off < c.Size(); off += 1 << 20 {
		end := min(off+1<<20, c.Size())
		n, err := c.ReadAt(ctx, buf[off:end], off)
		if err != nil && n != int(end-off) {
			c.Close()
			return nil, nil, err
		}
	}
	return buf, c, nil
}

type member struct {
	name string
	data []byte
}

func packTar(t *testing.T, file string, members ...member) {
	t.Helper()
	var buf bytes.Buffer
	w := tar.NewWriter(&buf)
	for _, m := range members {
		if err := w.WriteHeader(&tar.Header{Name: m.name, Mode: 0o644, Size: int64(len(m.data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		w.Write(m.data)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func manifest(files ...member) []byte {
	var b bytes.Buffer
	for _, f := range files {
		fmt.Fprintf(&b, "SHA256(%s)= %x\n", f.name, sha256.Sum256(f.data))
	}
	return b.Bytes()
}

// ovfXML writes a descriptor for one streamOptimized disk file of the given size.
func ovfXML(name, diskFile string, diskSize, capacity int64) []byte {
	return []byte(fmt.Sprintf(`<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vmw="http://www.vmware.com/schema/ovf">
  <References><File ovf:href="%[2]s" ovf:id="file1" ovf:size="%[3]d"/></References>
  <DiskSection><Info>disks</Info>
    <Disk ovf:capacity="%[4]d" ovf:capacityAllocationUnits="byte" ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
  <NetworkSection><Info>nets</Info><Network ovf:name="VM Network"/></NetworkSection>
  <VirtualSystem ovf:id="%[1]s">
    <Info>A virtual machine</Info>
    <Name>%[1]s</Name>
    <VirtualHardwareSection>
      <Info>hw</Info>
      <Item><rasd:InstanceID>1</rasd:InstanceID><rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>2</rasd:VirtualQuantity></Item>
      <Item><rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits><rasd:InstanceID>2</rasd:InstanceID><rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>2048</rasd:VirtualQuantity></Item>
      <Item><rasd:Address>0</rasd:Address><rasd:InstanceID>3</rasd:InstanceID><rasd:ResourceSubType>VirtualSCSI</rasd:ResourceSubType><rasd:ResourceType>6</rasd:ResourceType></Item>
      <Item><rasd:AddressOnParent>0</rasd:AddressOnParent><rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource><rasd:InstanceID>4</rasd:InstanceID><rasd:Parent>3</rasd:Parent><rasd:ResourceType>17</rasd:ResourceType></Item>
      <Item><rasd:Address>00:50:56:01:02:03</rasd:Address><rasd:Connection>VM Network</rasd:Connection><rasd:InstanceID>5</rasd:InstanceID><rasd:ResourceSubType>VmxNet3</rasd:ResourceSubType><rasd:ResourceType>10</rasd:ResourceType></Item>
      <vmw:Config ovf:required="false" vmw:key="firmware" vmw:value="efi"/>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
`, name, diskFile, diskSize, capacity))
}
