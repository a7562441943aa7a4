package vmx

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
)

func TestHardware(t *testing.T) {
	fh, err := os.Open("testdata/web.vmx")
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	f, err := Parse(fh, "web.vmx")
	if err != nil {
		t.Fatal(err)
	}
	h, err := f.Hardware()
	if err != nil {
		t.Fatal(err)
	}
	if h.Name != `web "prod" | café` || h.CPUs != 4 || h.CoresPerSocket != 2 || h.MemoryMiB != 3072 || h.Firmware != "efi" || !h.SecureBoot {
		t.Fatalf("hardware %+v", h)
	}
	wantDisks := []Disk{
		{"scsi", 0, 0, "web-000002.vmdk"},
		{"sata", 0, 1, "data/sata disk.vmdk"},
		{"nvme", 0, 3, "/vmfs/volumes/ds1/web/nvme.vmdk"},
		{"ide", 1, 0, "IDE.VMDK"},
	}
	if !reflect.DeepEqual(h.Disks, wantDisks) {
		t.Fatalf("disks\n got %+v\nwant %+v", h.Disks, wantDisks)
	}
	wantNICs := []NIC{
		{0, "vmxnet3", "00:0c:29:aa:bb:01", "VM Network"},
		{1, "e1000e", "00:50:56:00:00:02", "backup"},
		{10, "", "00:50:56:10:10:10", ""},
	}
	if !reflect.DeepEqual(h.NICs, wantNICs) {
		t.Fatalf("NICs\n got %+v\nwant %+v", h.NICs, wantNICs)
	}
}

func TestBootOrder(t *testing.T) {
	f, err := Parse(strings.NewReader(`scsi0:0.present = "TRUE"
scsi0:0.fileName = "a.vmdk"
sata0:0.present = "TRUE"
sata0:0.fileName = "b.vmdk"
bios.hddOrder = "sata0:0,scsi0:0"
`), "x.vmx")
	if err != nil {
		t.Fatal(err)
	}
	h, err := f.Hardware()
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Disks) != 2 || h.Disks[0].FileName != "b.vmdk" || h.Firmware != "bios" || h.CPUs != 1 {
		t.Fatalf("%+v", h)
	}
}

func TestRefusals(t *testing.T) {
	for _, s := range []string{
		"no equals sign\n",
		`a = "unterminated` + "\n",
		`a = "x" trailing` + "\n",
		`a = "bad |zz escape"` + "\n",
		`a = "cut |2"` + "\n",
		`numvcpus = "many"` + "\n",
		`memSize = "-1"` + "\n",
		`.encoding = "klingon"` + "\n",
	} {
		f, err := Parse(strings.NewReader(s), "x.vmx")
		if err == nil {
			_, err = f.Hardware()
		}
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "x.vmx") {
			t.Fatalf("%q: got %v", s, err)
		}
	}
}

func TestUnquote(t *testing.T) {
	for in, want := range map[string]string{
		`"a|22b"`:       `a"b`,
		`"|7C|7c"`:      `||`,
		`plain # c`:     `plain`,
		`"x" # comment`: `x`,
		`""`:            ``,
	} {
		got, err := unquote([]byte(in))
		if err != nil || string(got) != want {
			t.Fatalf("unquote(%s) = %q %v, want %q", in, got, err, want)
		}
	}
}
