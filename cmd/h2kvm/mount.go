package main

import (
	"context"
	"fmt"
	"os"
	"path"
	"strings"

	"github.com/h2kvm/h2kvm/daemon"
	"github.com/h2kvm/h2kvm/pipeline/migrate"
	"github.com/h2kvm/h2kvm/pipeline/resolve/ovf"
	"github.com/h2kvm/h2kvm/vfs/source"
)

// MountCmd is `h2kvm mount`.
type MountCmd struct {
	Source     string `arg:"" help:"The disk: a .vmdk descriptor or monolithic file, https://…, ssh://…, nbd://…."`
	Mountpoint string `arg:"" type:"existingdir" help:"An existing empty folder to mount on."`
	Name       string `help:"Folder name of the disk under MOUNTPOINT (default: the VMDK's base name)."`
	CacheLimit Size   `default:"256MiB" placeholder:"SIZE" help:"Local disk for caching remote blocks; the cache is deleted at unmount."`
	Verify     bool   `help:"For an OVA member (ova:ARCHIVE#MEMBER): read it once completely and refuse to mount it unless it matches the OVA's manifest."`
}

// ovaManifest returns the manifest digest of an OVA member SOURCE for the daemon, or nil.
func ovaManifest(ctx context.Context, loc string, cfg source.Config) (*daemon.Digest, error) {
	m, err := migrate.MemberManifest(ctx, loc, cfg)
	if err != nil || m == nil {
		return nil, err
	}
	return &daemon.Digest{Alg: m.Alg, Hex: m.Hex}, nil
}

func (c *MountCmd) Help() string {
	return `Mounts a disk read-only for forensic work, with no copy: the flattened chain appears as
MOUNTPOINT/<name>/disk.raw, a plain file any tool can read (mount -o ro,loop, fls, sleuthkit,
guestfish --ro -a). Writes are refused (EROFS); there is no overlay and no byte of the source is
changed. Remote blocks are fetched when read, into a bounded temporary cache that is removed on
exit. Unmounts on Ctrl-C or SIGTERM, or with 'fusermount3 -u MOUNTPOINT'.`
}

func (c *MountCmd) Run(ctx context.Context, g *Globals) error {
	name := c.Name
	if name == "" {
		name = diskName(c.Source)
	}
	state, err := os.MkdirTemp("", "h2kvm-mount-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(state)
	cfg, err := source.ConfigFromEnv()
	if err != nil {
		return err
	}
	d, err := daemon.New(ctx, daemon.Config{
		StateDir:   state,
		MountDir:   c.Mountpoint,
		CacheLimit: int64(c.CacheLimit),
		Source:     cfg,
		Logger:     g.Log,
	})
	if err != nil {
		return err
	}
	spec := daemon.ExportSpec{Name: name, Source: c.Source, ReadOnly: true, Transient: true}
	if spec.Manifest, err = ovaManifest(ctx, c.Source, cfg); err != nil {
		d.Close(context.WithoutCancel(ctx))
		return err
	}
	if _, err := d.CreateExport(ctx, spec); err != nil {
		d.Close(context.WithoutCancel(ctx))
		return err
	}
	if spec.Manifest != nil {
		if !c.Verify {
			g.Log.Warn("the disk file is listed in the OVA's manifest but not verified; --verify reads it once completely first",
				"alg", spec.Manifest.Alg, "digest", spec.Manifest.Hex)
		} else {
			v, err := d.Verify(ctx, name, daemon.VerifyRequest{})
			if err == nil && v.State != daemon.VerifyOK {
				err = fmt.Errorf("mount: %s does not match the manifest: %s %s, the manifest says %s: %w", c.Source, v.Alg, v.Actual, v.Expected, ovf.ErrDigest)
			}
			if err != nil {
				d.Close(context.WithoutCancel(ctx))
				return err
			}
			g.Log.Info("the disk file matches the OVA's manifest", "alg", v.Alg, "digest", v.Actual, "seconds", v.Seconds)
		}
	}
	fmt.Fprintf(g.Stdout, "%s\n", path.Join(c.Mountpoint, name, "disk.raw"))
	g.Log.Info("mounted read-only; Ctrl-C to unmount", "file", path.Join(c.Mountpoint, name, "disk.raw"))
	err = d.Run(ctx)
	if ctx.Err() != nil && err == nil {
		return nil
	}
	return err
}

// diskName derives a folder name from a SOURCE: the last path element without its extension
// and query, with characters outside [A-Za-z0-9._-] replaced.
func diskName(src string) string {
	s := src
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		s = s[:i]
	}
	s = path.Base(strings.ReplaceAll(s, "\\", "/"))
	s = strings.TrimSuffix(s, path.Ext(s))
	b := []byte(s)
	for i, ch := range b {
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '_' || ch == '.') {
			b[i] = '_'
		}
	}
	s = strings.TrimLeft(string(b), ".")
	if s == "" {
		return "disk"
	}
	return s
}
