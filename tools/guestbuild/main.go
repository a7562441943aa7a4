// Command guestbuild builds the VMware-style Linux test guests into the test cache.
//
//	go run ./tools/guestbuild --guest debian-bios [--cache /var/cache/h2kvm-test] [--json]
//	go run ./tools/guestbuild --list
//
// It prints the cache entry's files (or its manifest with --json). A guest already built for
// the current recipe is returned at once; see package guests for the cache contract.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/h2kvm/h2kvm/tools/guestbuild/guests"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("guestbuild", flag.ContinueOnError)
	fs.SetOutput(stderr)
	name := fs.String("guest", "", "guest to build (see --list)")
	cache := fs.String("cache", guests.CacheDir(), "cache folder (env H2KVM_TEST_CACHE)")
	mirror := fs.String("mirror", "", "Debian mirror (default: the host's apt mirror, env H2KVM_DEBIAN_MIRROR)")
	list := fs.Bool("list", false, "list the known guests with their recipe hashes and exit")
	asJSON := fs.Bool("json", false, "print the manifest as JSON")
	quiet := fs.Bool("quiet", false, "do not copy the build log to stderr")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *list {
		for _, n := range guests.Names() {
			r, _ := guests.Lookup(n)
			h, err := r.Hash()
			if err != nil {
				return err
			}
			state := "not built"
			if _, err := guests.Cached(n, *cache); err == nil {
				state = "cached"
			}
			fmt.Fprintf(stdout, "%s\t%s\t%.16s\t%s\n", n, r.Firmware, h, state)
		}
		return nil
	}
	if *name == "" {
		return fmt.Errorf("guestbuild: --guest is required (known: %v)", guests.Names())
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	b := guests.Builder{CacheDir: *cache, Mirror: *mirror}
	if !*quiet {
		b.Log = stderr
	}
	g, err := b.Build(ctx, *name)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(g.Manifest)
	}
	fmt.Fprintf(stdout, "dir\t%s\nbase\t%s\ntop\t%s\nssh_key\t%s\nmanifest\t%s/%s\nbuild_seconds\t%.0f\n",
		g.Dir, g.Base, g.Top, g.SSHKey, g.Dir, guests.ManifestName, g.Manifest.BuildSeconds)
	return nil
}
