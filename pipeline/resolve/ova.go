package resolve

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/h2kvm/h2kvm/pipeline/machine"
	"github.com/h2kvm/h2kvm/pipeline/resolve/ovf"
	"github.com/h2kvm/h2kvm/vfs"
	"github.com/h2kvm/h2kvm/vfs/source/tarsrc"
)

// pkg is an OVF package: its files, wherever they are (inside an OVA, or next to an .ovf).
type pkg interface {
	// open opens the package file name (a cleaned href).
	open(ctx context.Context, name string) (vfs.Source, error)
	// location is the SOURCE location of the package file name.
	location(name string) (string, error)
	// describe names the package in messages.
	describe() string
	// checkDisk refuses (ErrOutside) a disk file name that leads out of the package.
	checkDisk(name string) error
}

type ovaPkg struct {
	archive string
	o       *tarsrc.Opener
	ix      *tarsrc.Index
}

func (p *ovaPkg) open(ctx context.Context, name string) (vfs.Source, error) {
	return p.o.Open(ctx, tarsrc.Location(p.archive, name))
}
func (p *ovaPkg) location(name string) (string, error) {
	return tarsrc.Location(p.archive, name), nil
}
func (p *ovaPkg) describe() string { return p.archive }

// checkDisk: a member of the archive is in the package by construction (tarsrc refuses
// unsafe member names).
func (p *ovaPkg) checkDisk(string) error { return nil }

type dirPkg struct {
	ovfLoc   string
	o        vfs.Opener
	allowOut bool // Options.AllowOutsideDisks
}

func (p *dirPkg) open(ctx context.Context, name string) (vfs.Source, error) {
	loc, err := p.location(name)
	if err != nil {
		return nil, err
	}
	return p.o.Open(ctx, loc)
}
func (p *dirPkg) location(name string) (string, error) { return p.o.Resolve(p.ovfLoc, name) }
func (p *dirPkg) describe() string                     { return p.ovfLoc }

// checkDisk: hrefs are relative and never contain ".." (package ovf), but a symbolic link in
// the folder (or a server's own mapping) may still lead out of it.
func (p *dirPkg) checkDisk(name string) error {
	loc, err := p.location(name)
	if err != nil {
		return err
	}
	if !p.allowOut && !confined(p.ovfLoc, loc) {
		return fmt.Errorf("%s (%s): %w", name, loc, ErrOutside)
	}
	return nil
}

func resolveOVA(ctx context.Context, loc string, opt *Options) (*machine.VM, error) {
	to := tarsrc.NewOpener(opt.opener())
	ix, err := to.Index(ctx, loc)
	if err != nil {
		return nil, fmt.Errorf("resolve: OVA: %w", err)
	}
	var ovfs, mfs, certs []string
	for _, n := range ix.Names() {
		switch strings.ToLower(path.Ext(n)) {
		case ".ovf":
			ovfs = append(ovfs, n)
		case ".mf":
			mfs = append(mfs, n)
		case ".cert":
			certs = append(certs, n)
		}
	}
	if len(ovfs) == 0 {
		return nil, fmt.Errorf("resolve: OVA %s holds no .ovf descriptor (members: %s): %w", loc, strings.Join(ix.Names(), ", "), ovf.ErrInvalid)
	}
	if len(ovfs) > 1 {
		opt.warnf("OVA %s holds %d descriptors; %s is read", loc, len(ovfs), ovfs[0])
	}
	p := &ovaPkg{archive: loc, o: to, ix: ix}
	mf := strings.TrimSuffix(ovfs[0], path.Ext(ovfs[0])) + ".mf"
	if len(mfs) > 0 && !contains(mfs, mf) {
		mf = mfs[0]
	}
	if len(mfs) == 0 {
		mf = ""
	}
	if len(certs) > 0 {
		opt.warnf("OVA %s: signature %s not checked", loc, certs[0])
	}
	return resolvePackage(ctx, p, ovfs[0], mf, opt)
}

func resolveOVF(ctx context.Context, loc string, opt *Options) (*machine.VM, error) {
	p := &dirPkg{ovfLoc: loc, o: opt.opener(), allowOut: opt.AllowOutsideDisks}
	base := path.Base(locationPath(loc))
	mf := strings.TrimSuffix(base, path.Ext(base)) + ".mf"
	src, err := p.open(ctx, mf)
	if err != nil {
		if !errors.Is(err, vfs.ErrNotFound) {
			return nil, fmt.Errorf("resolve: OVF %s: manifest: %w", loc, err)
		}
		mf = ""
	} else {
		src.Close()
	}
	return resolvePackage(ctx, p, base, mf, opt)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// readSmall reads a whole package file of at most limit bytes.
func readSmall(ctx context.Context, p pkg, name string, limit int64) ([]byte, error) {
	s, err := p.open(ctx, name)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	if s.Size() > limit {
		return nil, fmt.Errorf("%s is %d bytes, more than the %d allowed: %w", s.Name(), s.Size(), limit, ovf.ErrInvalid)
	}
	b := make([]byte, s.Size())
	if err := vfs.ReadFull(ctx, s, b, 0); err != nil {
		return nil, err
	}
	return b, nil
}

// resolvePackage reads the descriptor ovfName and the manifest mfName ("" when none) of p.
func resolvePackage(ctx context.Context, p pkg, ovfName, mfName string, opt *Options) (*machine.VM, error) {
	where := p.describe()
	desc, err := readSmall(ctx, p, ovfName, ovf.MaxSize)
	if err != nil {
		return nil, fmt.Errorf("resolve: %s: descriptor: %w", where, err)
	}
	var mf ovf.Manifest
	if mfName == "" {
		opt.warnf("%s has no manifest: nothing in it is verified", where)
	} else {
		b, err := readSmall(ctx, p, mfName, ovf.MaxManifestSize)
		if err != nil {
			return nil, fmt.Errorf("resolve: %s: manifest: %w", where, err)
		}
		if mf, err = ovf.ParseManifest(bytes.NewReader(b), mfName); err != nil {
			return nil, fmt.Errorf("resolve: %s: %w", where, err)
		}
		if d, ok := mf[ovfName]; ok {
			h := ovf.NewHash(d.Alg)
			h.Write(desc)
			if err := mf.Verify(ovfName, h.Sum(nil)); err != nil {
				return nil, fmt.Errorf("resolve: %s: descriptor does not match the manifest: %w", where, err)
			}
		} else {
			opt.warnf("%s: manifest %s does not list the descriptor %s: it is not verified", where, mfName, ovfName)
		}
	}
	env, err := ovf.Parse(bytes.NewReader(desc), ovfName)
	if err != nil {
		return nil, fmt.Errorf("resolve: %s: %w", where, err)
	}
	for _, w := range env.Warnings {
		opt.warnf("%s: %s", where, w)
	}
	s := env.System
	vm := &machine.VM{
		Name: s.Name, CPUs: s.CPUs, CoresPerSocket: s.CoresPerSocket, MemoryMiB: int(s.MemoryMiB),
		Firmware: s.Firmware, SecureBoot: s.SecureBoot, Disks: []machine.Disk{},
	}
	for _, n := range s.NICs {
		vm.NICs = append(vm.NICs, machine.NIC{Model: n.Model, MAC: n.MAC, Network: n.Network})
	}
	var unverified []string
	for i, a := range s.Disks {
		if a.File == nil {
			opt.warnf("%s: disk %d (%s) has no file (an empty disk created on import); skipped", where, i, a.DiskID)
			continue
		}
		f := a.File
		if f.Compression != "" || f.ChunkSize > 0 {
			return nil, fmt.Errorf("resolve: %s: disk file %s is stored gzip-compressed or chunked, which cannot be read in place: %w", where, f.Href, vfs.ErrUnsupported)
		}
		if err := p.checkDisk(f.Href); err != nil {
			return nil, fmt.Errorf("resolve: %s: disk file %s: %w", where, f.Href, err)
		}
		src, err := p.open(ctx, f.Href)
		if err != nil {
			return nil, fmt.Errorf("resolve: %s: disk file %s: %w", where, f.Href, err)
		}
		want, err := checkDiskFile(ctx, src, f, mf, opt, where, &unverified)
		src.Close()
		if err != nil {
			return nil, err
		}
		loc, err := p.location(f.Href)
		if err != nil {
			return nil, fmt.Errorf("resolve: %s: disk file %s: %w", where, f.Href, err)
		}
		d := machine.Disk{Source: loc, Controller: a.Controller, Capacity: a.Capacity, Manifest: want}
		if a.Controller != "" {
			d.Unit = fmt.Sprintf("%d:%d", a.Bus, a.Unit)
		}
		vm.Disks = append(vm.Disks, d)
	}
	if len(unverified) > 0 {
		opt.warnf("%s: disk(s) %s not verified against the manifest: verification was turned off", where, strings.Join(unverified, ", "))
	}
	if len(vm.Disks) == 0 {
		return nil, fmt.Errorf("resolve: %s: the virtual system has no disk with a file: %w", where, ovf.ErrInvalid)
	}
	return vm, nil
}

// checkDiskFile compares a disk file with its declared size and returns its manifest digest
// (nil when not listed): checked at once with VerifyDisks (a full read), else left for the
// migration to check once it has read the disk anyway, or marked off with NoVerifyDisks.
func checkDiskFile(ctx context.Context, src vfs.Source, f *ovf.File, mf ovf.Manifest, opt *Options, where string, unverified *[]string) (*machine.ManifestDigest, error) {
	if ms, ok := src.(*tarsrc.Source); ok && ms.Member().Truncated() {
		m := ms.Member()
		opt.warnf("%s: disk file %s is cut short: the archive holds %d of its %d bytes; reads past that fail (%v)", where, f.Href, m.Available, m.Size, vfs.ErrTruncated)
	}
	if f.Size > 0 && src.Size() != f.Size {
		opt.warnf("%s: disk file %s is %d bytes but the descriptor declares %d: the package was cut short or altered; reads past what is there fail (%v)", where, f.Href, src.Size(), f.Size, vfs.ErrTruncated)
	}
	d, listed := mf[f.Href]
	if mf == nil {
		return nil, nil
	}
	if !listed {
		opt.warnf("%s: manifest does not list disk file %s: it is not verified", where, f.Href)
		return nil, nil
	}
	md := &machine.ManifestDigest{File: f.Href, Alg: d.Alg, Hex: hex.EncodeToString(d.Sum), State: machine.DigestUnverified}
	switch {
	case opt.VerifyDisks:
		sum, err := tarsrc.Digest(ctx, src, ovf.NewHash(d.Alg))
		if err != nil {
			return nil, fmt.Errorf("resolve: %s: verifying disk file %s: %w", where, f.Href, err)
		}
		if err := mf.Verify(f.Href, sum); err != nil {
			return nil, fmt.Errorf("resolve: %s: %w", where, err)
		}
		md.State = machine.DigestVerified
	case opt.NoVerifyDisks:
		*unverified = append(*unverified, f.Href)
		md.State = machine.DigestOff
	}
	return md, nil
}

// MemberManifest returns the manifest digest of the OVA member at loc (an "ova:ARCHIVE#MEMBER"
// location), read from the archive's manifest (the .mf named like its .ovf, else the first
// .mf), or nil when the archive has no manifest or it does not list the member. It reads the
// archive's headers and the manifest only.
func MemberManifest(ctx context.Context, loc string, opt Options) (*machine.ManifestDigest, error) {
	archive, member, err := tarsrc.Split(loc)
	if err != nil {
		return nil, err
	}
	to := tarsrc.NewOpener(opt.opener())
	ix, err := to.Index(ctx, archive)
	if err != nil {
		return nil, fmt.Errorf("resolve: OVA: %w", err)
	}
	var mfs []string
	want := ""
	for _, n := range ix.Names() {
		switch strings.ToLower(path.Ext(n)) {
		case ".mf":
			mfs = append(mfs, n)
		case ".ovf":
			if want == "" {
				want = strings.TrimSuffix(n, path.Ext(n)) + ".mf"
			}
		}
	}
	if len(mfs) == 0 {
		return nil, nil
	}
	mfName := mfs[0]
	if contains(mfs, want) {
		mfName = want
	}
	p := &ovaPkg{archive: archive, o: to, ix: ix}
	b, err := readSmall(ctx, p, mfName, ovf.MaxManifestSize)
	if err != nil {
		return nil, fmt.Errorf("resolve: %s: manifest: %w", archive, err)
	}
	mf, err := ovf.ParseManifest(bytes.NewReader(b), mfName)
	if err != nil {
		return nil, fmt.Errorf("resolve: %s: %w", archive, err)
	}
	d, ok := mf[member]
	if !ok {
		return nil, nil
	}
	return &machine.ManifestDigest{File: member, Alg: d.Alg, Hex: hex.EncodeToString(d.Sum), State: machine.DigestUnverified}, nil
}
