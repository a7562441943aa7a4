package main

import (
	"context"
	"strings"
	"time"

	"github.com/h2kvm/h2kvm/daemon"
	"github.com/h2kvm/h2kvm/vfs/source"
)

// ServeCmd is `h2kvm serve`.
type ServeCmd struct {
	StateDir   string        `default:"/var/lib/h2kvm" env:"H2KVM_STATE_DIR" placeholder:"DIR" help:"State directory: database, cache files, overlays."`
	Control    string        `env:"H2KVM_CONTROL" placeholder:"SOCK" help:"Unix socket of the control API (HTTP+JSON, mode 0600)."`
	NBDSocket  string        `name:"nbd-socket" env:"H2KVM_NBD_SOCKET" placeholder:"SOCK" help:"Unix socket for NBD clients (mode 0600)."`
	NBDListen  string        `name:"nbd-listen" placeholder:"ADDR" help:"Also serve NBD on this TCP address (e.g. 127.0.0.1:10809); loopback only unless --tls-ca is given. Writable exports are refused there without TLS."`
	TLSCert    string        `name:"tls-cert" type:"existingfile" placeholder:"FILE" help:"PEM x509 certificate offered to NBD clients (NBD_OPT_STARTTLS). With it, TCP clients must use TLS."`
	TLSKey     string        `name:"tls-key" type:"existingfile" placeholder:"FILE" help:"PEM private key of --tls-cert."`
	TLSCA      string        `name:"tls-ca" type:"existingfile" placeholder:"FILE" help:"PEM CA certificates: TLS clients must present a certificate signed by one (authentication)."`
	Insecure   bool          `name:"nbd-insecure-tcp" help:"Serve writable exports over TCP without TLS. Anyone who can reach the port can then write, including guests whose user-mode network maps the host's loopback."`
	MaxConns   int           `name:"nbd-max-conns" default:"64" placeholder:"N" help:"NBD connections open at once; more are closed on accept."`
	MaxBuffer  Size          `name:"nbd-max-buffer" default:"256MiB" placeholder:"SIZE" help:"Payload bytes the NBD requests in flight of all connections may hold together (at least 32MiB)."`
	WriteWait  time.Duration `name:"nbd-write-timeout" default:"2m" placeholder:"DURATION" help:"Drop an NBD client that does not read a reply for this long."`
	Mount      string        `placeholder:"DIR" help:"FUSE mount point: each export appears as DIR/<name>/disk.raw."`
	Export     []string      `sep:"none" placeholder:"NAME=SOURCE[,ro]" help:"Serve SOURCE as export NAME (repeatable). ',ro' makes it read-only; otherwise writes go to a copy-on-write overlay discarded at exit."`
	CacheLimit Size          `default:"1GiB" placeholder:"SIZE" help:"Local disk the caches of remote files may use in all (e.g. 512MiB)."`
	ChunkSize  Size          `default:"1MiB" placeholder:"SIZE" help:"Fetch unit for remote files."`
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

TCP (--nbd-listen) is not private even on loopback: every local user, and every guest whose
user-mode network maps the host's loopback, can connect. Writable exports are therefore served
there only over TLS (or with --nbd-insecure-tcp). With --tls-cert and --tls-key every TCP client
must use TLS; the unix socket stays plain. --tls-ca makes clients authenticate with a
certificate; without it TLS encrypts but anyone may connect. Clients give a directory holding
ca-cert.pem (and client-cert.pem, client-key.pem for --tls-ca):

  nbdinfo 'nbds://127.0.0.1:10809/vm?tls-certificates=DIR'
  qemu-img info --object tls-creds-x509,id=tls0,endpoint=client,dir=DIR \
    --image-opts driver=nbd,host=127.0.0.1,port=10809,export=vm,tls-creds=tls0

TLS-PSK (the username:hexkey files of nbdkit --tls-psk and qemu tls-creds-psk) is not offered:
Go's crypto/tls implements no PSK cipher suites. Use x509 certificates.

Credentials for remote sources come from the environment (H2KVM_VSPHERE_USER,
H2KVM_VSPHERE_PASSWORD or H2KVM_VSPHERE_PASSWORD_FILE, H2KVM_SSH_KEY, H2KVM_SSH_PASSWORD, ...),
never from flags.`
}

func (c *ServeCmd) Run(ctx context.Context, g *Globals) error {
	if c.Control == "" && c.NBDSocket == "" && c.NBDListen == "" && c.Mount == "" {
		return usageErrorf("nothing to serve on: give --control, --nbd-socket, --nbd-listen or --mount")
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return usageErrorf("--tls-cert and --tls-key go together")
	}
	if c.TLSCA != "" && c.TLSCert == "" {
		return usageErrorf("--tls-ca needs --tls-cert and --tls-key")
	}
	if c.MaxConns <= 0 {
		return usageErrorf("--nbd-max-conns %d: want at least 1", c.MaxConns)
	}
	if c.WriteWait <= 0 {
		return usageErrorf("--nbd-write-timeout %v: want a positive duration", c.WriteWait)
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
		StateDir:            c.StateDir,
		ControlSocket:       c.Control,
		NBDSocket:           c.NBDSocket,
		NBDListen:           c.NBDListen,
		NBDTLSCert:          c.TLSCert,
		NBDTLSKey:           c.TLSKey,
		NBDTLSClientCA:      c.TLSCA,
		NBDInsecureTCP:      c.Insecure,
		NBDMaxConns:         c.MaxConns,
		NBDMaxBufferedBytes: int64(c.MaxBuffer),
		NBDWriteTimeout:     c.WriteWait,
		MountDir:            c.Mount,
		CacheLimit:          int64(c.CacheLimit),
		ChunkSize:           int64(c.ChunkSize),
		Source:              cfg,
		Logger:              g.Log,
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
		g.Log.Info("export ready", "export", spec.Name, "source", source.Redact(spec.Source), "readonly", spec.ReadOnly)
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
