package integration

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestServeEveryFormat serves an image of every subformat qemu-img writes through the h2kvm
// binary and checks, with real clients, that nbdcopy of the export equals `qemu-img convert -O
// raw` of the file, that nbdinfo --map reports holes where nothing is allocated, and that
// `h2kvm info --json` describes the chain.
func TestServeEveryFormat(t *testing.T) {
	needTool(t, "qemu-img", "qemu-io", "nbdcopy", "nbdinfo")
	dir := shortDir(t)
	writes := []string{"write -P 0x41 0 1M", "write -P 0x42 3M 64k", "write -P 0x43 7M 512k", "write -z 3M 4k"}
	formats := []string{"monolithicSparse", "monolithicFlat", "twoGbMaxExtentSparse", "twoGbMaxExtentFlat", "streamOptimized"}
	var exports []string
	for _, f := range formats {
		name := f + ".vmdk"
		if f == "streamOptimized" { // qemu writes stream images only by converting
			raw := filepath.Join(dir, "src.raw")
			runCmd(t, dir, "qemu-img", "create", "-q", "-f", "raw", raw, "8M")
			runCmd(t, dir, append([]string{"qemu-io", "-f", "raw"}, append(ioArgs(writes), raw)...)...)
			runCmd(t, dir, "qemu-img", "convert", "-O", "vmdk", "-o", "subformat=streamOptimized", raw, name)
		} else {
			runCmd(t, dir, "qemu-img", "create", "-q", "-f", "vmdk", "-o", "subformat="+f, name, "8M")
			runCmd(t, dir, append([]string{"qemu-io", "-f", "vmdk"}, append(ioArgs(writes), name)...)...)
		}
		exports = append(exports, "--export", strings.ToLower(f)+"="+filepath.Join(dir, name)+",ro")
	}
	top := smallChain(t, dir)
	exports = append(exports, "--export", "chain="+top+",ro")
	sums := sha256Dir(t, dir)

	sock := filepath.Join(dir, "nbd.sock")
	p := startH2KVM(t, nil, append([]string{"serve", "--state-dir", filepath.Join(dir, "state"), "--nbd-socket", sock}, exports...)...)
	waitFile(t, p, sock)

	check := func(export, file string) {
		t.Run(export, func(t *testing.T) {
			uri := "nbd+unix:///" + export + "?socket=" + sock
			got := filepath.Join(t.TempDir(), "got.raw")
			runCmd(t, "", "nbdcopy", uri, got)
			want := qemuRaw(t, file)
			a, _ := os.ReadFile(got)
			b, _ := os.ReadFile(want)
			if !bytes.Equal(a, b) {
				t.Fatalf("nbdcopy of %s differs from qemu-img convert -O raw of %s", export, file)
			}
			m := runCmd(t, "", "nbdinfo", "--map", uri)
			if !strings.Contains(m, "hole") && !strings.Contains(file, "Flat") {
				t.Errorf("nbdinfo --map of a sparse image shows no hole:\n%s", m)
			}
		})
	}
	for _, f := range formats {
		check(strings.ToLower(f), filepath.Join(dir, f+".vmdk"))
	}
	check("chain", top)

	var info struct {
		Links []struct {
			File       string `json:"file"`
			CID        string `json:"cid"`
			ParentCID  string `json:"parent_cid"`
			CreateType string `json:"create_type"`
		} `json:"links"`
	}
	if err := json.Unmarshal([]byte(runCmd(t, "", h2kvmBinary(t), "info", "--json", top)), &info); err != nil {
		t.Fatal(err)
	}
	if len(info.Links) != 3 || info.Links[0].ParentCID != info.Links[1].CID || info.Links[1].ParentCID != info.Links[2].CID {
		t.Errorf("info --json of the 3-link chain: %+v", info.Links)
	}
	if sha256Dir(t, dir) != sums {
		t.Error("serving changed the source images")
	}
}

func ioArgs(cmds []string) []string {
	var a []string
	for _, c := range cmds {
		a = append(a, "-c", c)
	}
	return a
}
