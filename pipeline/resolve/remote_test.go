package resolve

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/h2kvm/h2kvm/vfs/source/httpsrc"
	"github.com/h2kvm/h2kvm/vfs/source/httpsrc/httpsrctest"
	"github.com/h2kvm/h2kvm/vfs/source/tarsrc"
)

// TestRemoteOVA resolves an OVA served over HTTP and reads its disk in place with range
// requests: the archive is never downloaded whole.
func TestRemoteOVA(t *testing.T) {
	ova, disk, _ := ovaFixture(t)
	data, err := os.ReadFile(ova)
	if err != nil {
		t.Fatal(err)
	}
	srv := httpsrctest.New(map[string][]byte{"web.ova": data})
	defer srv.Close()
	var ranged, whole int
	srv.SetCheck(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Header.Get("Range") == "" && r.Method == http.MethodGet {
			whole++
		} else {
			ranged++
		}
		return true
	})
	loc := srv.FileURL("web.ova")
	ho, err := httpsrc.NewOpener(loc, httpsrc.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ho.Close()
	vm, err := Resolve(context.Background(), loc, Options{Opener: ho})
	if err != nil {
		t.Fatal(err)
	}
	if vm.Disks[0].Source != tarsrc.Location(loc, "web-disk1.vmdk") || !strings.HasPrefix(vm.Disks[0].Source, "ova:http://") {
		t.Fatalf("disk %+v", vm.Disks[0])
	}
	got, c, err := readChain(t, tarsrc.NewOpener(ho), vm.Disks[0].Source)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if !bytes.Equal(got, rawOf(t, disk)) {
		t.Fatal("remote OVA disk bytes differ from qemu-img convert -O raw")
	}
	if whole != 0 || ranged == 0 {
		t.Fatalf("%d whole-file GETs, %d ranged requests: want only ranged", whole, ranged)
	}
}
