package integration

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestMigrateOVA migrates the debian-bios guest as an exported OVA (OVF + SHA256 manifest +
// streamOptimized disk) read in place over HTTP. It must boot under libvirtd with the OVF's MAC
// and sizing in the domain, and the OVA must be read about once (no extraction, no re-read). A
// VM folder with its .vmx is TestMigrateMultiDisk's source.
func TestMigrateOVA(t *testing.T) {
	needIntegration(t)
	needTool(t, "virsh", "virt-xml-validate", "qemu-img")
	g := migrateGuest(t)
	const mac = "00:50:56:a1:b2:01" // the MAC the guest's .link file pins: kept, it needs no change

	t.Run("ova over http", func(t *testing.T) {
		dir := t.TempDir()
		disk := filepath.Join(dir, "web02-disk1.vmdk")
		runCmd(t, "", "qemu-img", "convert", "-O", "vmdk", "-o", "subformat=streamOptimized", g.Top, disk)
		st, err := os.Stat(disk)
		if err != nil {
			t.Fatal(err)
		}
		ovf := ovfFor("web02", filepath.Base(disk), st.Size(), g.Manifest.VirtualSize, mac)
		mf := fmt.Sprintf("SHA256(web02.ovf)= %s\nSHA256(%s)= %s\n", sha256Hex(t, []byte(ovf)), filepath.Base(disk), sha256File(t, disk))
		ova := filepath.Join(dir, "web02.ova")
		writeTar(t, ova, map[string]string{"web02.ovf": ovf, "web02.mf": mf}, disk)

		var served atomic.Int64
		files := http.FileServer(http.Dir(dir))
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			files.ServeHTTP(countWriter{w, &served}, r)
		}))
		defer srv.Close()

		out := filepath.Join(t.TempDir(), "out")
		m := runMigrate(t, migrateEnv(), migrateTimeout, srv.URL+"/web02.ova", "--output", out, "--boot-test")
		if m.code != 0 {
			t.Fatalf("migrate exited %d after %v\n%s", m.code, m.elapsed.Round(time.Second), tail(m.stderr.String(), 6000))
		}
		j := readReport(t, out)
		checkBooted(t, out, j.Name, mac, "1024", "2")
		ratio := float64(served.Load()) / float64(st.Size())
		t.Logf("ova: bytes read from the OVA %d ÷ the disk member's %d bytes = %.3f; peak staging %s of %s virtual; migrate with boot test %v",
			served.Load(), st.Size(), ratio, mib(j.PeakStagingBytes), mib(j.VirtualBytes), m.elapsed.Round(time.Second))
		if ratio > 1.05 {
			t.Errorf("read %.3f × the disk from the OVA, want ≤ 1.05 (no extraction, no re-read)", ratio)
		}
	})
}

// checkBooted checks the domain XML for the source VM's MAC and sizing.
func checkBooted(t *testing.T, out, name, mac, memMiB, vcpus string) {
	t.Helper()
	x, err := os.ReadFile(filepath.Join(out, name+".xml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`<mac address="` + mac + `">`, `<memory unit="MiB">` + memMiB + `</memory>`, `<vcpu>` + vcpus + `</vcpu>`} {
		if !strings.Contains(string(x), want) {
			t.Errorf("domain XML lacks %s", want)
		}
	}
}

func ovfFor(name, disk string, size, capacity int64, mac string) string {
	return `<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vmw="http://www.vmware.com/schema/ovf">
  <References><File ovf:href="` + disk + `" ovf:id="file1" ovf:size="` + fmt.Sprint(size) + `"/></References>
  <DiskSection><Info>disks</Info>
    <Disk ovf:capacity="` + fmt.Sprint(capacity) + `" ovf:capacityAllocationUnits="byte" ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
  <VirtualSystem ovf:id="` + name + `"><Info>vm</Info><Name>` + name + `</Name>
    <VirtualHardwareSection><Info>hw</Info>
      <Item><rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits><rasd:InstanceID>1</rasd:InstanceID><rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>2</rasd:VirtualQuantity></Item>
      <Item><rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits><rasd:InstanceID>2</rasd:InstanceID><rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>1024</rasd:VirtualQuantity></Item>
      <Item><rasd:Address>0</rasd:Address><rasd:InstanceID>3</rasd:InstanceID><rasd:ResourceSubType>VirtualSCSI</rasd:ResourceSubType><rasd:ResourceType>6</rasd:ResourceType></Item>
      <Item><rasd:AddressOnParent>0</rasd:AddressOnParent><rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource><rasd:InstanceID>4</rasd:InstanceID><rasd:Parent>3</rasd:Parent><rasd:ResourceType>17</rasd:ResourceType></Item>
      <Item><rasd:Address>` + mac + `</rasd:Address><rasd:AddressOnParent>7</rasd:AddressOnParent><rasd:Connection>VM Network</rasd:Connection><rasd:InstanceID>5</rasd:InstanceID><rasd:ResourceSubType>VmxNet3</rasd:ResourceSubType><rasd:ResourceType>10</rasd:ResourceType></Item>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
`
}

// writeTar writes an archive of the given small members, then the file at big (by base name).
func writeTar(t *testing.T, path string, small map[string]string, big string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	for _, n := range []string{"web02.ovf", "web02.mf"} {
		body := small[n]
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, body)
	}
	src, err := os.Open(big)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	st, _ := src.Stat()
	if err := tw.WriteHeader(&tar.Header{Name: filepath.Base(big), Mode: 0o644, Size: st.Size(), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(tw, src); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func sha256Hex(t *testing.T, b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	io.Copy(h, f)
	return hex.EncodeToString(h.Sum(nil))
}

// countWriter counts the body bytes an HTTP handler sends.
type countWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (w countWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.n.Add(int64(n))
	return n, err
}

// TestVerifyDisks: an OVA whose disk was altered after its manifest was written (one byte of
// header padding: still a valid VMDK) opens with a warning that its disks are not verified, and
// is refused with exit 2, naming the disk, when --verify-disks asks for digests to be checked —
// by `info` and by `migrate`, which then writes nothing.
func TestVerifyDisks(t *testing.T) {
	needTool(t, "qemu-img", "qemu-io")
	dir := t.TempDir()
	raw := filepath.Join(dir, "raw.img")
	runCmd(t, "", "qemu-img", "create", "-q", "-f", "raw", raw, "8M")
	runCmd(t, "", "qemu-io", "-f", "raw", "-c", "write -P 0x5a 1M 2M", raw)
	disk := filepath.Join(dir, "web02-disk1.vmdk")
	runCmd(t, "", "qemu-img", "convert", "-O", "vmdk", "-o", "subformat=streamOptimized", raw, disk)
	st, err := os.Stat(disk)
	if err != nil {
		t.Fatal(err)
	}
	ovf := ovfFor("web02", filepath.Base(disk), st.Size(), 8<<20, "00:50:56:a1:b2:09")
	mf := fmt.Sprintf("SHA256(web02.ovf)= %s\nSHA256(%s)= %s\n", sha256Hex(t, []byte(ovf)), filepath.Base(disk), sha256File(t, disk))
	f, err := os.OpenFile(disk, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0xff}, 400); err != nil { // header padding
		t.Fatal(err)
	}
	f.Close()
	ova := filepath.Join(dir, "web02.ova")
	writeTar(t, ova, map[string]string{"web02.ovf": ovf, "web02.mf": mf}, disk)
	before := sha256File(t, ova)

	run := func(args ...string) (int, string) {
		cmd := exec.Command(h2kvmBinary(t), args...)
		out, err := cmd.CombinedOutput()
		code := 0
		if err != nil {
			var ee *exec.ExitError
			if !errors.As(err, &ee) {
				t.Fatalf("h2kvm %v: %v", args, err)
			}
			code = ee.ExitCode()
		}
		return code, string(out)
	}
	if code, out := run("info", ova); code != 0 || !strings.Contains(out, "not verified") {
		t.Errorf("info without --verify-disks: exit %d, want 0 and a warning that the disk is not verified:\n%s", code, out)
	}
	if code, out := run("info", "--verify-disks", ova); code != 2 || !strings.Contains(out, "digest mismatch") || !strings.Contains(out, filepath.Base(disk)) {
		t.Errorf("info --verify-disks: exit %d, want 2 and a digest mismatch naming %s:\n%s", code, filepath.Base(disk), out)
	}
	outDir := filepath.Join(t.TempDir(), "out")
	if code, out := run("migrate", "--verify-disks", ova, "--output", outDir); code != 2 || !strings.Contains(out, "digest mismatch") {
		t.Errorf("migrate --verify-disks: exit %d, want 2 and a digest mismatch:\n%s", code, tail(out, 3000))
	}
	if ents, _ := os.ReadDir(outDir); len(ents) > 0 {
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), ".qcow2") || strings.HasSuffix(e.Name(), ".xml") {
				t.Errorf("refused migration left %s", e.Name())
			}
		}
	}
	if sha256File(t, ova) != before {
		t.Error("the OVA changed")
	}
}
