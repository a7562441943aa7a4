package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/h2kvm/h2kvm/pipeline/machine"
	"github.com/h2kvm/h2kvm/pipeline/migrate"
	"github.com/h2kvm/h2kvm/pipeline/resolve"
	"github.com/h2kvm/h2kvm/vfs"
	"github.com/h2kvm/h2kvm/vfs/diskfmt/all"
	"github.com/h2kvm/h2kvm/vfs/source"
)

// InfoCmd is `h2kvm info`.
type InfoCmd struct {
	Source            string `arg:"" help:"The disk: a .vmdk descriptor or monolithic file, https://…, ssh://…, nbd://…."`
	JSON              bool   `help:"Print the chain as JSON on stdout."`
	IgnoreCIDMismatch bool   `help:"Open a chain whose parentCID does not match its parent's CID (reported as a warning)."`
	Snapshot          string `help:"For vsphere:// sources: describe the disks as of this snapshot (name, path or MoRef)."`
	VerifyDisks       bool   `help:"For OVA/OVF sources: read every disk once completely and check it against the manifest (otherwise each digest is shown as not verified)."`
}

func (c *InfoCmd) Help() string {
	return `Opens a disk (its format detected from its first bytes; VMDK is the format h2kvm reads
today, anything else is refused with exit 2) and every parent it names, and prints the chain
top link first, like
'qemu-img info --backing-chain': for each link its file, createType, CID and parentCID, the
parent hint and where it was found, the virtual size, and each extent with its type, on-disk
format, file and allocated bytes. Nothing is written; remote files are read, not copied.`
}

func (c *InfoCmd) Run(ctx context.Context, g *Globals) error {
	cfg, err := source.ConfigFromEnv()
	if err != nil {
		return err
	}
	if resolve.KindOf(c.Source) != resolve.KindDisk {
		return c.runVM(ctx, g, cfg)
	}
	info, err := chainInfo(ctx, c.Source, cfg, c.IgnoreCIDMismatch)
	if err != nil {
		return err
	}
	if c.JSON {
		enc := json.NewEncoder(g.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(info)
	}
	printChain(g.Stdout, info)
	return nil
}

// vmInfo is the JSON form of `info` on a VM (vSphere, OVA, OVF, VMX).
type vmInfo struct {
	VM       *machine.VM     `json:"vm"`
	Chains   []vfs.ChainInfo `json:"chains"`
	Warnings []string        `json:"warnings,omitempty"`
}

func (c *InfoCmd) runVM(ctx context.Context, g *Globals, cfg source.Config) error {
	var out vmInfo
	vm, err := migrate.ResolveVM(ctx, c.Source, cfg, migrate.ResolveOptions{Snapshot: c.Snapshot, VerifyDisks: c.VerifyDisks,
		Warn: func(m string) { out.Warnings = append(out.Warnings, m) }})
	if err != nil {
		return err
	}
	out.VM = vm
	for _, d := range vm.Disks {
		ci, err := chainInfo(ctx, d.Source, cfg, c.IgnoreCIDMismatch)
		if err != nil {
			return fmt.Errorf("disk %s: %w", d.Source, err)
		}
		out.Chains = append(out.Chains, ci)
	}
	if c.JSON {
		enc := json.NewEncoder(g.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	w := g.Stdout
	fmt.Fprintf(w, "vm: %s\n", vm.Name)
	fmt.Fprintf(w, "cpus: %d (cores per socket %d)\nmemory: %d MiB\n", vm.CPUs, vm.CoresPerSocket, vm.MemoryMiB)
	if vm.Firmware != "" {
		fmt.Fprintf(w, "firmware: %s (secure boot %v)\n", vm.Firmware, vm.SecureBoot)
	}
	for i, n := range vm.NICs {
		fmt.Fprintf(w, "nic %d: model=%s mac=%s network=%s\n", i, n.Model, n.MAC, n.Network)
	}
	for i, d := range vm.Disks {
		fmt.Fprintf(w, "\n== disk %d: %s %s capacity %d\n", i, d.Controller, d.Unit, d.Capacity)
		fmt.Fprintf(w, "manifest: %s\n", manifestState(d))
		printChain(w, out.Chains[i])
	}
	if len(out.Warnings) > 0 {
		fmt.Fprintf(w, "\nwarnings:\n  %s\n", strings.Join(out.Warnings, "\n  "))
	}
	return nil
}

// manifestState says what is known of a disk's manifest digest.
func manifestState(d machine.Disk) string {
	m := d.Manifest
	switch {
	case m == nil:
		return "not listed in a manifest"
	case m.State == machine.DigestVerified:
		return fmt.Sprintf("%s %s, verified (the whole disk was read)", m.Alg, m.Hex)
	case m.State == machine.DigestOff:
		return fmt.Sprintf("%s %s, not verified (turned off)", m.Alg, m.Hex)
	}
	return fmt.Sprintf("%s %s, not verified: info reads the disk in part (migrate checks it from what it reads; --verify-disks reads it all now)", m.Alg, m.Hex)
}

// chainInfo opens the chain at a disk SOURCE and describes it.
func chainInfo(ctx context.Context, loc string, cfg source.Config, ignoreCID bool) (vfs.ChainInfo, error) {
	opener, name, err := source.Open(ctx, loc, cfg)
	if err != nil {
		return vfs.ChainInfo{}, err
	}
	defer opener.Close()
	chain, err := vfs.OpenDisk(ctx, all.Formats(), opener, name, vfs.OpenOptions{IgnoreCIDMismatch: ignoreCID})
	if err != nil {
		return vfs.ChainInfo{}, err
	}
	defer chain.Close()
	return chain.Info(ctx)
}

// printChain writes the text form of info.
func printChain(w io.Writer, info vfs.ChainInfo) {
	for i, l := range info.Links {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "image: %s\n", l.File)
		fmt.Fprintf(w, "file format: %s\n", cmp.Or(info.Format, "vmdk"))
		fmt.Fprintf(w, "virtual size: %s (%d bytes)\n", humanBytes(l.VirtualSize), l.VirtualSize)
		fmt.Fprintf(w, "allocated: %s (%d bytes)\n", humanBytes(l.AllocatedBytes), l.AllocatedBytes)
		if l.CreateType != "" {
			fmt.Fprintf(w, "create type: %s\n", l.CreateType)
		}
		if l.EmbeddedDescriptor {
			fmt.Fprintf(w, "descriptor: embedded\n")
		}
		if l.CID != "" {
			fmt.Fprintf(w, "CID: %s\n", l.CID)
		}
		if l.ParentCID != "" {
			fmt.Fprintf(w, "parent CID: %s\n", l.ParentCID)
		}
		if l.ParentHint != "" {
			fmt.Fprintf(w, "backing file: %s", l.ParentHint)
			if l.Parent != "" && l.Parent != l.ParentHint {
				fmt.Fprintf(w, " (found at %s)", l.Parent)
			}
			fmt.Fprintln(w)
		}
		if l.AdapterType != "" {
			fmt.Fprintf(w, "adapter type: %s\n", l.AdapterType)
		}
		if l.HWVersion != "" {
			fmt.Fprintf(w, "virtual hardware version: %s\n", l.HWVersion)
		}
		fmt.Fprintf(w, "extents:\n")
		for j, e := range l.Extents {
			fmt.Fprintf(w, "  [%d] %s %s format=%s virtual=%d allocated=%d", j, e.Access, e.Type, e.Format, e.VirtualSize, e.AllocatedBytes)
			if e.File != "" {
				fmt.Fprintf(w, " file=%s", e.File)
			}
			if e.FileOffset != 0 {
				fmt.Fprintf(w, " offset=%d", e.FileOffset)
			}
			fmt.Fprintln(w)
			for _, n := range e.Notes {
				fmt.Fprintf(w, "      note: %s\n", n)
			}
		}
	}
	if len(info.Warnings) > 0 {
		fmt.Fprintf(w, "\nwarnings:\n  %s\n", strings.Join(info.Warnings, "\n  "))
	}
}

// humanBytes formats n in binary units, as qemu-img does.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	units := "KMGTPE"
	v, i := float64(n)/unit, 0
	for v >= unit && i < len(units)-1 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.3g %ciB", v, units[i])
}
