package vmx

import (
	"bytes"
	"os"
	"testing"
)

func FuzzParse(f *testing.F) {
	b, err := os.ReadFile("testdata/web.vmx")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(".encoding = \"Shift_JIS\"\ndisplayName = \"\x83e\x83X\x83g|7C\"\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		file, err := Parse(bytes.NewReader(b), "fuzz.vmx")
		if err != nil {
			return
		}
		h, err := file.Hardware()
		if err != nil {
			return
		}
		for _, d := range h.Disks {
			if d.FileName == "" || d.Bus < 0 || d.Unit < 0 {
				t.Fatalf("bad disk %+v", d)
			}
		}
	})
}
