// Command h2kvm moves VMware virtual machines to KVM. This file holds the command line grammar
// and the one place the process exits; each command lives in its own file.
//
// Adding a command takes one field and one file:
//
//  1. add a field to CLI below, e.g.
//
//     Info InfoCmd `cmd:"" help:"Show a disk's chain, formats, sizes and allocation."`
//
//  2. add cmd/h2kvm/info.go with `type InfoCmd struct{ ...flags and args... }` and
//     `func (c *InfoCmd) Run(ctx context.Context, g *Globals) error`, which parses, calls one
//     library function, prints through g.Stdout and returns an error. Kong supplies ctx
//     (cancelled on SIGINT/SIGTERM) and g; Run declares only what it uses. A longer help text is
//     a `func (c *InfoCmd) Help() string` method; a usage mistake the grammar cannot catch is
//     returned as usageErrorf(...).
//
// Errors become exit codes in errors.go, nowhere else.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/alecthomas/kong"

	"github.com/h2kvm/h2kvm/vfs/source"
)

// version is set at build time: -ldflags "-X main.version=...".
var version = "dev"

// CLI is the whole command line: global flags and one field per command.
type CLI struct {
	Globals

	Serve   ServeCmd   `cmd:"" help:"Serve VMDK chains as flattened disks over NBD and FUSE, with a control API."`
	Info    InfoCmd    `cmd:"" help:"Show a disk's chain: links, CIDs, formats, extents, sizes and allocation."`
	Convert ConvertCmd `cmd:"" help:"Flatten a disk and convert it to qcow2 or raw, without an intermediate copy."`
	Inspect InspectCmd `cmd:"" help:"Report the guest facts that decide whether it boots on KVM (read-only)."`
	Plan    PlanCmd    `cmd:"" help:"Print the fixes migrate would make, why, and which files (read-only)."`
	Migrate MigrateCmd `cmd:"" help:"Migrate a VM: fetch, flatten, inspect, plan, fix, convert, validate (and boot-test)."`
	Mount   MountCmd   `cmd:"" help:"Mount a disk read-only as a plain file for forensic work, without copying it."`
	VSphere VSphereCmd `cmd:"" name:"vsphere" help:"vSphere inventory: list VMs with their disks and snapshots."`
	Doctor  DoctorCmd  `cmd:"" help:"Check this host: required tools, FUSE, whether KVM works or TCG is used."`
}

// Globals are the flags every command accepts, plus what main prepares for the commands.
type Globals struct {
	LogLevel string           `enum:"debug,info,warn,error" default:"info" env:"H2KVM_LOG_LEVEL" help:"Log level for messages on stderr: ${enum}."`
	Version  kong.VersionFlag `help:"Print the version and exit."`

	// Set by main after parsing; commands use them instead of os.Stdout and slog.Default.
	Log    *slog.Logger `kong:"-"`
	Stdout io.Writer    `kong:"-"` // results (text or JSON); logs never go here
}

const description = `h2kvm moves VMware virtual machines to KVM without staging full copies of their disks.

A VMDK snapshot chain (local files, a vSphere datastore, an ESXi host over SSH, an NBD server or an OVA) is presented as one flattened, lazily fetched block device over NBD and FUSE; libguestfs fixes the guest through a copy-on-write overlay, qemu-img converts it, and a boot test proves the result.

Exit codes: 0 success; 1 internal or other error (including missing tools); 2 bad input (corrupt, truncated or unsupported image, inconsistent chain, file not found, bad usage); 3 guest not bootable; 4 boot test failed; 130 interrupted (SIGINT/SIGTERM).`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second signal kills the process the default way
	}()
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// exitRequest carries an exit code out of kong (--help, --version) without calling os.Exit, so
// run stays testable and main stays the only place that exits.
type exitRequest struct{ code int }

// run parses args, runs the selected command and returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) (code int) {
	var cli CLI
	parser, err := kong.New(&cli,
		kong.Name("h2kvm"),
		kong.Description(description),
		kong.Writers(stdout, stderr),
		kong.Exit(func(c int) { panic(exitRequest{c}) }),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true, WrapUpperBound: 100}),
		kong.Vars{"version": "h2kvm " + version},
		kong.BindTo(ctx, (*context.Context)(nil)),
	)
	if err != nil { // the grammar itself is wrong: a programming error
		fmt.Fprintf(stderr, "h2kvm: %v\n", err)
		return exitInternal
	}
	defer func() {
		if r := recover(); r != nil {
			e, ok := r.(exitRequest)
			if !ok {
				panic(r)
			}
			code = e.code
		}
	}()

	kctx, err := parser.Parse(args)
	if err != nil {
		fmt.Fprintf(stderr, "h2kvm: %v\n", err)
		fmt.Fprintln(stderr, "Run 'h2kvm --help' for usage.")
		return exitCode(err)
	}
	// Credentials were read from the environment by whoever started h2kvm; from here on they
	// live in this process only, so that no child (qemu-img, virsh, libguestfs's qemu)
	// inherits them. Commands read them with source.ConfigFromEnv.
	source.HideSecrets()
	cli.Globals.Log = newLogger(stderr, cli.Globals.LogLevel)
	cli.Globals.Stdout = stdout

	err = kctx.Run(&cli.Globals)
	if err != nil && ctx.Err() != nil && !errors.Is(err, context.Canceled) {
		// The command failed because it was interrupted (a killed child, a closed connection):
		// report the interruption, keep the detail.
		err = fmt.Errorf("%w: %w", context.Canceled, err)
	}
	if err != nil {
		fmt.Fprintf(stderr, "h2kvm: %s\n", describe(err))
	}
	return exitCode(err)
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}
