package main

import (
	"context"
	"strings"

	"github.com/h2kvm/h2kvm/daemon"
	"github.com/h2kvm/h2kvm/vfs/source"
)

// ServeCmd is `h2kvm serve`.
type ServeCmd struct {
	StateDir   string   `default:"/var/lib/h2kvm" env:"H2KVM_STATE_DIR" placeholder:"DIR" help:"State directory: database, cache files, overlays."`
	Control    string   `env:"H2KVM_CONTROL" placeholder:"SOCK" help:"Unix socket of the control API (HTTP+JSON, mode 0600)."`
	NBDSocket  string   `name:"nbd-socket" env:"H2KVM_NBD_SOCKET" placeholder:"SOCK" help:"Unix socket for NBD clients (mode 0600)."`
	NBDListen  string   `name:"nbd-listen" placeholder:"ADDR" help:"Also serve NBD on this TCP address; loopback only (e.g. 127.0.0.1:10809)."`
	Mount      string   `placeholder:"DIR" help:"FUSE mount point: each export appears as DIR/<name>/disk.raw."`
	Export     []string `sep:"none" placeholder:"NAME=SOURCE[,ro]" help:"Serve SOURCE as export NAME (repeatable). ',ro' makes it read-only; otherwise writes go to a copy-on-write overlay discarded at exit."`
	CacheLimit Size     `default:"1GiB" placeholder:"SIZE" help:"Local disk the caches of remote files may use in all (e.g. 512MiB)."`
	ChunkSize  Size     `default:"1MiB" placeholder:"SIZE" help:"Fetch unit for remote files."`
}

func (c *ServeCmd) Help() string {
	return `Serves VMDK chains as flattened block devices until SIGINT or SIGTERM.

Each export reads its chain lazily: only the blocks clients read are fetched from remote
sources, each once, into a bounded local cache. Writable exports put every write into a
copy-on-write overlay in the state directory; the source is never written.

Exports come from --export flags (gone at exit) or from the control API, which records them so
they are restored when the daemon restarts:

  curl --unix-socket SOCK -X POST localhost/v1/exports -d '{"name":"vm","source":"vm.vmdk"}'
  curl --unix-socket SOCK localhost/v1/exports          # list, with statistics
  curl --unix-socket SOCK localhost/v1/exports/vm       # one, with its chain
  curl --unix-socket SOCK -X DELETE localhost/v1/exports/vm
  curl --unix-socket SOCK localhost/metrics             # Prometheus

Clients: qemu-img convert -O qcow2 'nbd+unix:///vm?socket=SOCK' vm.qcow2, nbdinfo, nbdcopy,
libguestfs, or the FUSE file DIR/vm/disk.raw.

Credentials for remote sources come from the environment (H2KVM_VSPHERE_USER,
H2KVM_VSPHERE_PASSWORD or H2KVM_VSPHERE_PASSWORD_FILE, H2KVM_SSH_KEY, H2KVM_SSH_PASSWORD, ...),
never from flags.`
}

func (c *ServeCmd) Run(ctx context.Context, g *Globals) error {
	if c.Control == "" && c.NBDSocket == "" && c.NBDListen == "" && c.Mount == "" {
		return usageErrorf("nothing to serve on: give --control, --nbd-socket, --nbd-listen or --mount")
	}
	var specs []daemon.ExportSpec
	for _, e := range c.Export {
		spec, err := parseExportFlag(e)
		if err != nil {
			return err
		}
		specs = append(specs, spec)
	}
	cfg, err := source.ConfigFromEnv()
	if err != nil {
		return err
	}
	d, err := daemon.New(ctx, daemon.Config{
		StateDir:      c.StateDir,
		ControlSocket: c.Control,
		NBDSocket:     c.NBDSocket,
		NBDListen:     c.NBDListen,
		MountDir:      c.Mount,
		CacheLimit:    int64(c.CacheLimit),
		ChunkSize:     int64(c.ChunkSize),
		Source:        cfg,
		Logger:        g.Log,
	})
	if err != nil {
		return err
	}
	for _, spec := range specs {
		if spec.Manifest, err = ovaManifest(ctx, spec.Source, cfg); err != nil {
			d.Close(context.WithoutCancel(ctx))
			return err
		}
		if _, err := d.CreateExport(ctx, spec); err != nil {
			d.Close(context.WithoutCancel(ctx))
			return err
		}
		g.Log.Info("export ready", "export", spec.Name, "source", spec.Source, "readonly", spec.ReadOnly)
	}
	err = d.Run(ctx)
	if ctx.Err() != nil && err == nil {
		return nil // a requested shutdown is a success
	}
	return err
}

// parseExportFlag parses NAME=SOURCE[,ro].
func parseExportFlag(s string) (daemon.ExportSpec, error) {
	name, src, ok := strings.Cut(s, "=")
	if !ok || name == "" || src == "" {
		return daemon.ExportSpec{}, usageErrorf("--export %q: want NAME=SOURCE[,ro]", s)
	}
	spec := daemon.ExportSpec{Name: name, Source: src, Transient: true}
	if rest, ok := strings.CutSuffix(src, ",ro"); ok {
		spec.Source, spec.ReadOnly = rest, true
	}
	return spec, nil
}
