package vsphere

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmware/govmomi/vim25/types"

	"github.com/h2kvm/h2kvm/internal/testenv"
	"github.com/h2kvm/h2kvm/vfs/source/httpsrc"
)

func TestResolveCurrentState(t *testing.T) {
	s := startSim(t)
	ctx := context.Background()
	var warnings []string
	opt := s.opts()
	opt.Warn = func(m string) { warnings = append(warnings, m) }
	got, err := Resolve(ctx, s.loc("/DC0/vm/"+vmName), opt)
	if err != nil {
		t.Fatal(err)
	}
	// Expected values, read independently through govmomi.
	vmo, c := s.vm(t)
	defer c.Logout(ctx, Options{})
	devs, err := vmo.Device(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var macs []string
	for _, d := range devs.SelectByType((*types.VirtualEthernetCard)(nil)) {
		macs = append(macs, d.(types.BaseVirtualEthernetCard).GetVirtualEthernetCard().MacAddress)
	}
	if len(macs) == 0 || len(got.NICs) != len(macs) {
		t.Fatalf("NICs %+v, want MACs %v", got.NICs, macs)
	}
	for i, n := range got.NICs {
		if n.MAC != strings.ToLower(macs[i]) || n.Model == "" || n.Network == "" {
			t.Fatalf("NIC %d %+v, want MAC %s", i, n, macs[i])
		}
	}
	simVM := s.model.Service.Context.Map.Get(vmo.Reference()).(interface {
		Reference() types.ManagedObjectReference
	})
	_ = simVM
	if got.Name != vmName || got.CPUs < 1 || got.MemoryMiB < 1 {
		t.Fatalf("VM %+v", got)
	}
	if len(got.Disks) != 1 {
		t.Fatalf("disks %+v", got.Disks)
	}
	d := got.Disks[0]
	want := "https://" + testUser + "@" + s.host() + "/folder/h2kvm/delta.vmdk?dcPath=DC0&dsName=LocalDS_0"
	if d.Source != want || d.Controller == "" || d.Unit == "" || d.Capacity != 16<<20 {
		t.Fatalf("disk %+v, want source %s", d, want)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "running") {
		t.Fatalf("warnings %v: want one about the running VM", warnings)
	}
	// The /folder URL serves the very bytes of the local file.
	body := folderGet(t, s, c.Cookie(), d.Source)
	local, err := os.ReadFile(filepath.Join(s.dsDir, "h2kvm", "delta.vmdk"))
	if err != nil {
		t.Fatal(err)
	}
	if string(body) != string(local) {
		t.Fatalf("/folder bytes (%d) differ from the local file (%d)", len(body), len(local))
	}
}

// folderGet fetches a /folder URL with a plain GET and the session cookie.
func folderGet(t *testing.T, s *sim, cookie, raw string) []byte {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	u.User = nil
	rt, err := httpsrc.NewTransport(httpsrc.TLSOptions{Thumbprints: []string{s.thumb}})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", u.String(), nil)
	req.AddCookie(&http.Cookie{Name: "vmware_soap_session", Value: cookie})
	resp, err := (&http.Client{Transport: rt}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", u, resp.Status)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestResolveNamedSnapshotAndList(t *testing.T) {
	s := startSim(t)
	ctx := context.Background()
	vmo, c := s.vm(t)
	defer c.Logout(ctx, Options{})
	task, err := vmo.CreateSnapshot(ctx, "before-move", "", false, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	// After the snapshot the VM writes to a new delta (as ESXi does).
	testenv.Run(t, filepath.Join(s.dsDir, "h2kvm"), "qemu-img", "create", "-q", "-f", "vmdk", "-b", "delta.vmdk", "-F", "vmdk", "delta2.vmdk")
	s.setDisk(t, "[LocalDS_0] h2kvm/delta2.vmdk", false)
	cbt := true
	task, err = vmo.Reconfigure(ctx, types.VirtualMachineConfigSpec{ChangeTrackingEnabled: &cbt})
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Wait(ctx); err != nil {
		t.Fatal(err)
	}

	var warnings []string
	opt := s.opts()
	opt.Warn = func(m string) { warnings = append(warnings, m) }
	cur, err := Resolve(ctx, s.loc("/DC0/vm/"+vmName), opt)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(cur.Disks[0].Source, "/folder/h2kvm/delta2.vmdk?") {
		t.Fatalf("current disk %s, want delta2.vmdk", cur.Disks[0].Source)
	}
	warnings = nil
	snap, err := Resolve(ctx, s.loc("/DC0/vm/"+vmName+"?snapshot=before-move"), opt)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(snap.Disks[0].Source, "/folder/h2kvm/delta.vmdk?") || len(warnings) != 0 {
		t.Fatalf("snapshot disk %s (warnings %v), want delta.vmdk and no warning", snap.Disks[0].Source, warnings)
	}
	if _, err := Resolve(ctx, s.loc("/DC0/vm/"+vmName+"?snapshot=nope"), opt); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "before-move") {
		t.Fatalf("unknown snapshot: %v", err)
	}
	// By MoRef and by bare name.
	for _, loc := range []string{"/?moref=" + vmo.Reference().Value, "/" + vmName, "/DC0/vm/" + vmo.Reference().Value} {
		v, err := Resolve(ctx, s.loc(loc), opt)
		if err != nil || v.Name != vmName {
			t.Fatalf("%s: %+v %v", loc, v, err)
		}
	}

	list, err := List(ctx, s.loc("/DC0/vm"), opt)
	if err != nil {
		t.Fatal(err)
	}
	var all []string
	var mine *VMInfo
	for i, v := range list {
		all = append(all, v.Path)
		if v.Name == vmName {
			mine = &list[i]
		}
	}
	if len(list) < 2 || mine == nil {
		t.Fatalf("list %v", all)
	}
	if mine.PowerState != "poweredOn" || !mine.CBT || mine.MoRef != vmo.Reference().Value || mine.Path != "/DC0/vm/"+vmName {
		t.Fatalf("listed %+v", mine)
	}
	if len(mine.Snapshots) != 1 || mine.Snapshots[0].Name != "before-move" || !mine.Snapshots[0].Current {
		t.Fatalf("snapshots %+v", mine.Snapshots)
	}
	if len(mine.Disks) != 1 || mine.Disks[0].Chain[0] != "[LocalDS_0] h2kvm/delta2.vmdk" || mine.Disks[0].Capacity != 16<<20 {
		t.Fatalf("disks %+v", mine.Disks)
	}
}

func TestErrors(t *testing.T) {
	s := startSim(t)
	ctx := context.Background()
	loc := s.loc("/DC0/vm/" + vmName)

	bad := s.opts()
	bad.Password = "wrong"
	if _, err := Resolve(ctx, loc, bad); !errors.Is(err, ErrLogin) || strings.Contains(err.Error(), "wrong") {
		t.Fatalf("wrong password: %v", err)
	}
	if _, err := Resolve(ctx, s.loc("/DC0/vm/no-such-vm"), s.opts()); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "no-such-vm") {
		t.Fatalf("unknown VM: %v", err)
	}
	if _, err := Resolve(ctx, s.loc("/NoDC/vm/x"), s.opts()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown DC: %v", err)
	}
	var ce *httpsrc.CertError
	noPin := s.opts()
	noPin.TLS = httpsrc.TLSOptions{}
	if _, err := Resolve(ctx, loc, noPin); !errors.As(err, &ce) || ce.SHA256 == "" {
		t.Fatalf("bad certificate: %v", err)
	}
	if _, err := Resolve(ctx, "vsphere://admin:pw@"+s.host()+"/DC0/vm/x", s.opts()); !errors.Is(err, ErrBadURL) || strings.Contains(err.Error(), "pw@") {
		t.Fatalf("password in URL: %v", err)
	}
	t.Setenv(EnvPassword, "")
	t.Setenv(EnvPasswordFile, "")
	if _, err := Resolve(ctx, loc, Options{TLS: s.opts().TLS}); !errors.Is(err, ErrLogin) {
		t.Fatalf("no password: %v", err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	_, err = Resolve(ctx, "vsphere://admin@"+closed+"/DC0/vm/x", s.opts())
	if err == nil || !strings.Contains(err.Error(), "cannot reach "+closed) {
		t.Fatalf("unreachable: %v", err)
	}
	t.Log(err)
}

func TestCredentialsFromEnvironmentAndSessionReuse(t *testing.T) {
	s := startSim(t)
	ctx := context.Background()
	pf := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pf, []byte(testPass+"\n"), 0o600)
	t.Setenv(EnvUser, testUser)
	t.Setenv(EnvPassword, "")
	t.Setenv(EnvPasswordFile, pf)
	opt := Options{TLS: s.opts().TLS, SessionFile: filepath.Join(t.TempDir(), "sessions", "vc.json")}
	l, err := ParseLocation("vsphere://" + s.host() + "/DC0/vm/" + vmName)
	if err != nil {
		t.Fatal(err)
	}
	c1, err := Login(ctx, l, opt)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(opt.SessionFile)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("session file: %v %v", st, err)
	}
	// The second login reuses the session even with a wrong password.
	opt2 := opt
	opt2.Password = "wrong"
	c2, err := Login(ctx, l, opt2)
	if err != nil {
		t.Fatal(err)
	}
	if c1.Cookie() == "" || c2.Cookie() != c1.Cookie() {
		t.Fatalf("session not reused: %q vs %q", c1.Cookie(), c2.Cookie())
	}
	if _, err := c2.Resolve(ctx, l, opt2); err != nil {
		t.Fatal(err)
	}
	// Once the session is gone, a real login happens (and a wrong password is refused).
	if err := c1.Logout(ctx, Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := Login(ctx, l, opt2); !errors.Is(err, ErrLogin) {
		t.Fatalf("after logout: %v", err)
	}
}

func TestParseLocation(t *testing.T) {
	for in, want := range map[string]Location{
		"vsphere://vc1/DC1/vm":                            {Host: "vc1", DC: "DC1", HasVM: true},
		"vsphere://a@vc1:8443/F/DC1/vm/x/web?snapshot=s1": {Host: "vc1:8443", User: "a", DC: "F/DC1", HasVM: true, Path: "x/web", Snapshot: "s1"},
		"vsphere://vc1/DC1/vm/vm-42":                      {Host: "vc1", DC: "DC1", HasVM: true, Path: "vm-42", MoRef: "vm-42"},
		"vsphere://vc1/web":                               {Host: "vc1", Path: "web"},
		"vsphere://vc1/?moref=vm-7":                       {Host: "vc1", MoRef: "vm-7"},
	} {
		l, err := ParseLocation(in)
		if err != nil || *l != want {
			t.Fatalf("%s: %+v %v, want %+v", in, l, err, want)
		}
	}
	for _, bad := range []string{"https://vc/x", "vsphere:///x", "vsphere://vc/x?foo=1", "vsphere://u:p@vc/x"} {
		if _, err := ParseLocation(bad); !errors.Is(err, ErrBadURL) {
			t.Fatalf("%s: %v", bad, err)
		}
	}
}

func TestTempSnapshot(t *testing.T) {
	s := startSim(t)
	ctx := context.Background()
	l, _ := ParseLocation(s.loc("/DC0/vm/" + vmName))
	c, err := Login(ctx, l, s.opts())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Logout(ctx, Options{})
	snap, err := c.CreateTempSnapshot(ctx, l, false)
	if err != nil {
		t.Fatal(err)
	}
	var warnings []string
	opt := s.opts()
	opt.Snapshot = snap.Name
	opt.Warn = func(m string) { warnings = append(warnings, m) }
	vm, err := c.Resolve(ctx, l, opt)
	if err != nil || len(warnings) != 0 || !strings.Contains(vm.Disks[0].Source, "delta.vmdk") {
		t.Fatalf("resolve with the temporary snapshot: %+v %v %v", vm, err, warnings)
	}
	if err := snap.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	list, err := c.List(ctx, l)
	if err != nil || len(list) != 1 || len(list[0].Snapshots) != 0 {
		t.Fatalf("after removal: %+v %v", list, err)
	}
}
