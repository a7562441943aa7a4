package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/h2kvm/h2kvm/integration/bootcheck"
	"github.com/h2kvm/h2kvm/tools/guestbuild/guests"
)

// Results is the JSON document written by a run.
type Results struct {
	Started   time.Time `json:"started"`
	Ended     time.Time `json:"ended"`
	CPUs      int       `json:"cpus"`
	LoadStart string    `json:"load_start"`
	LoadEnd   string    `json:"load_end"`
	Binary    string    `json:"h2kvm_binary"`
	// CacheLimit is h2kvm migrate's --cache-limit ("" for its default).
	CacheLimit string        `json:"h2kvm_cache_limit"`
	Guests     []GuestResult `json:"guests"`
}

// GuestResult holds every measure of one guest.
type GuestResult struct {
	Guest    string `json:"guest"`
	Firmware string `json:"firmware"`
	// VirtualBytes from qemu-img info of the chain top; AllocatedBytes: qemu-img map data of the
	// flattened chain; ChainFileBytes: the link files' sizes.
	VirtualBytes   int64        `json:"virtual_bytes"`
	AllocatedBytes int64        `json:"allocated_bytes"`
	ChainFileBytes int64        `json:"chain_file_bytes"`
	LoadStart      string       `json:"load_start"`
	LoadEnd        string       `json:"load_end"`
	H2KVM          *H2KVMResult `json:"h2kvm,omitempty"`
	Naive          *NaiveResult `json:"naive,omitempty"`
	V2V            *V2VResult   `json:"virt_v2v,omitempty"`
	Ratios         Ratios       `json:"ratios"`
}

// bench is one run's configuration.
type bench struct {
	bin, httpBin, out, cache string
	cacheLimit               string // h2kvm migrate --cache-limit; "" for its default
	tools                    map[string]bool
	doBoot                   bool
	interval                 time.Duration
	stepTimeout, v2vTimeout  time.Duration
	bootTimeout              time.Duration
	stdout                   io.Writer
}

// env is the environment added to h2kvm's: libguestfs's direct backend under TCG.
func (b *bench) env(extra ...string) []string {
	return append([]string{"LIBGUESTFS_BACKEND=direct", "LIBGUESTFS_BACKEND_SETTINGS=force_tcg"}, extra...)
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("benchmigrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	bin := fs.String("bin", "bin/h2kvm", "the h2kvm binary to measure")
	httpBin := fs.String("benchhttp", "", "the tools/benchhttp binary (default: go build it into -out)")
	out := fs.String("out", "/var/tmp/h2kvm-bench/migrate", "work and output folder")
	cache := fs.String("cache", guests.CacheDir(), "test guest cache (env H2KVM_TEST_CACHE)")
	list := fs.String("guests", os.Getenv("H2KVM_BENCH_GUESTS"), "comma-separated guests (env H2KVM_BENCH_GUESTS; default: every cached guest)")
	build := fs.Bool("build", os.Getenv("H2KVM_BENCH_BUILD") == "1", "build guests that are not cached (env H2KVM_BENCH_BUILD=1)")
	toolList := fs.String("tools", envOr("H2KVM_BENCH_MIGRATE_TOOLS", "h2kvm,naive,v2v"), "what to measure: h2kvm, naive, v2v (env H2KVM_BENCH_MIGRATE_TOOLS)")
	doBoot := fs.Bool("boot", os.Getenv("H2KVM_BENCH_BOOT") != "0", "boot every output (env H2KVM_BENCH_BOOT=0 turns it off)")
	cacheLimit := fs.String("cache-limit", os.Getenv("H2KVM_BENCH_CACHE_LIMIT"), "h2kvm migrate --cache-limit (env H2KVM_BENCH_CACHE_LIMIT; default: h2kvm's)")
	noneOK := fs.Bool("none-ok", false, "with no guest cached (and none named), say so and exit 0")
	jsonPath := fs.String("json", "", "results file (default OUT/results.json)")
	interval := fs.Duration("interval", 250*time.Millisecond, "disk use sampling interval")
	stepTimeout := fs.Duration("step-timeout", 60*time.Minute, "bound of one migrate, download, convert or fix step")
	v2vTimeout := fs.Duration("v2v-timeout", 120*time.Minute, "bound of one virt-v2v run")
	bootTimeout := fs.Duration("boot-timeout", 12*time.Minute, "bound of one boot check (TCG on a loaded host is slow)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("benchmigrate: unexpected arguments %q", fs.Args())
	}
	tools, err := parseTools(*toolList)
	if err != nil {
		return err
	}
	b := &bench{out: *out, cacheLimit: *cacheLimit, cache: *cache, tools: tools, doBoot: *doBoot, interval: *interval,
		stepTimeout: *stepTimeout, v2vTimeout: *v2vTimeout, bootTimeout: *bootTimeout, stdout: stdout}
	if b.bin, err = filepath.Abs(*bin); err != nil {
		return err
	}
	if tools["h2kvm"] {
		if _, err := os.Stat(b.bin); err != nil {
			return fmt.Errorf("benchmigrate: h2kvm binary: %w (go build -o bin/h2kvm ./cmd/h2kvm)", err)
		}
	}
	for _, t := range requiredTools(tools) {
		if _, err := exec.LookPath(t); err != nil {
			return fmt.Errorf("benchmigrate: %s is not installed (tools/install-deps.sh)", t)
		}
	}
	sel, err := selectGuests(ctx, *list, *cache, *build, stderr)
	if err != nil {
		return err
	}
	if len(sel) == 0 && *noneOK {
		fmt.Fprintf(stdout, "migration bench: no test guest is cached in %s: skipped (build one with `go run ./tools/guestbuild --guest debian-bios`)\n", *cache)
		return nil
	}
	if len(sel) == 0 {
		return fmt.Errorf("benchmigrate: %w: build one with `go run ./tools/guestbuild --guest debian-bios`, or pass -build", errNoGuests)
	}
	if err := os.MkdirAll(b.out, 0o755); err != nil {
		return fmt.Errorf("benchmigrate: %w", err)
	}
	if b.httpBin = *httpBin; b.httpBin == "" {
		b.httpBin = filepath.Join(b.out, "benchhttp")
		c := exec.CommandContext(ctx, "go", "build", "-o", b.httpBin, "./tools/benchhttp")
		c.Stderr = stderr
		if err := c.Run(); err != nil {
			return fmt.Errorf("benchmigrate: go build ./tools/benchhttp (run from the repository): %w", err)
		}
	}
	if *jsonPath == "" {
		*jsonPath = filepath.Join(b.out, "results.json")
	}
	res := Results{Started: time.Now().UTC(), CPUs: runtime.NumCPU(), LoadStart: loadAvg(), Binary: b.bin, CacheLimit: b.cacheLimit}
	var names []string
	for _, g := range sel {
		names = append(names, g.Manifest.Name)
	}
	fmt.Fprintf(stdout, "migration bench: guests %s; tools %s; boots %v; h2kvm --cache-limit %s; load average %s on %d cores; work %s\n",
		strings.Join(names, ", "), *toolList, b.doBoot, orDefault(b.cacheLimit), res.LoadStart, res.CPUs, b.out)
	for _, g := range sel {
		gr, err := b.guest(ctx, g)
		res.Guests = append(res.Guests, gr)
		if err == nil {
			printGuest(stdout, gr)
		}
		// Written after every guest, so an interrupted run keeps what it measured.
		res.Ended, res.LoadEnd = time.Now().UTC(), loadAvg()
		if werr := writeJSON(*jsonPath, res); werr != nil {
			return werr
		}
		if err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "\nresults: %s (load average at the end %s)\n", *jsonPath, res.LoadEnd)
	return nil
}

func orDefault(s string) string {
	if s == "" {
		return "default"
	}
	return s
}

var errNoGuests = errors.New("no test guest is cached")

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func parseTools(s string) (map[string]bool, error) {
	m := map[string]bool{}
	for _, t := range strings.Split(s, ",") {
		t = strings.TrimSpace(t)
		switch t {
		case "h2kvm", "naive", "v2v":
			m[t] = true
		case "":
		default:
			return nil, fmt.Errorf("benchmigrate: unknown tool %q (want h2kvm, naive, v2v)", t)
		}
	}
	if len(m) == 0 {
		return nil, fmt.Errorf("benchmigrate: no tool to measure")
	}
	return m, nil
}

func requiredTools(tools map[string]bool) []string {
	req := []string{"qemu-img", "qemu-system-x86_64", "go"}
	if tools["naive"] {
		req = append(req, "curl", "virt-customize", "guestfish")
	}
	if tools["v2v"] {
		req = append(req, "virt-v2v")
	}
	return req
}

// selectGuests returns the guests named in list (comma separated), or every cached one when
// list is empty. A named guest that is not cached is an error unless build is set.
func selectGuests(ctx context.Context, list, cache string, build bool, log io.Writer) ([]guests.Guest, error) {
	var names []string
	for _, n := range strings.Split(list, ",") {
		if n = strings.TrimSpace(n); n != "" {
			names = append(names, n)
		}
	}
	var out []guests.Guest
	if len(names) == 0 {
		for _, n := range guests.Names() {
			if g, err := guests.Cached(n, cache); err == nil {
				out = append(out, g)
			} else if build {
				names = append(names, n)
			}
		}
		if !build {
			return out, nil
		}
	}
	for _, n := range names {
		if _, err := guests.Lookup(n); err != nil {
			return nil, fmt.Errorf("benchmigrate: %w", err)
		}
		g, err := guests.Cached(n, cache)
		if err != nil {
			if !build {
				return nil, fmt.Errorf("benchmigrate: guest %s is not cached (%v); build it with `go run ./tools/guestbuild --guest %s` or pass -build", n, err, n)
			}
			fmt.Fprintf(log, "benchmigrate: building %s (minutes)…\n", n)
			if g, err = (guests.Builder{CacheDir: cache, Log: log}).Build(ctx, n); err != nil {
				return nil, err
			}
		}
		out = append(out, g)
	}
	return out, nil
}

// guest measures one guest. Its error is for a bench that could not run (no server, no disk
// space, interrupted); a tool that fails is a result.
func (b *bench) guest(ctx context.Context, g guests.Guest) (GuestResult, error) {
	m := g.Manifest
	gr := GuestResult{Guest: m.Name, Firmware: string(m.Firmware), LoadStart: loadAvg()}
	info, err := qemuImgInfo(ctx, g.Top)
	if err != nil {
		return gr, err
	}
	gr.VirtualBytes = info.VirtualSize
	if gr.AllocatedBytes, err = mappedData(ctx, g.Top); err != nil {
		return gr, err
	}
	for _, f := range g.Chain {
		if st, err := os.Stat(f); err == nil {
			gr.ChainFileBytes += st.Size()
		}
	}
	dir := filepath.Join(b.out, m.Name)
	if err := os.RemoveAll(dir); err != nil {
		return gr, fmt.Errorf("benchmigrate: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return gr, fmt.Errorf("benchmigrate: %w", err)
	}
	srv, err := startHTTP(ctx, b.httpBin, g.Dir, dir)
	if err != nil {
		return gr, err
	}
	defer srv.Close()
	fw := bootcheck.BIOS
	if m.Firmware == guests.UEFI {
		fw = bootcheck.UEFI
	}
	say := func(f string, a ...any) {
		fmt.Fprintf(b.stdout, "  [%s %s load %s] %s\n", time.Now().Format("15:04:05"), m.Name, loadAvg(), fmt.Sprintf(f, a...))
	}
	if b.tools["h2kvm"] {
		say("h2kvm migrate %s%s", srv.URL, filepath.Base(g.Top))
		r := b.runH2KVM(ctx, &gr, srv, filepath.Base(g.Top), filepath.Join(dir, "h2kvm"))
		gr.H2KVM = &r
		say("h2kvm: ok=%v %.0fs %s", r.OK, r.WallSeconds, r.Error)
		if r.OK && b.doBoot {
			say("boot the h2kvm output")
			r.Boot = b.boot(ctx, r.Output, fw, filepath.Join(dir, "boot-h2kvm.serial.log"))
			say("boot: login %v ssh %v", r.Boot.Booted, r.Boot.Network)
		}
	}
	if err := ctx.Err(); err != nil {
		return gr, err
	}
	if b.tools["naive"] {
		var chain []string
		for _, f := range g.Chain {
			chain = append(chain, filepath.Base(f))
		}
		say("naive: curl + qemu-img convert + fix")
		r := b.runNaive(ctx, srv, chain, filepath.Join(dir, "naive"))
		gr.Naive = &r
		say("naive: ok=%v %.0fs %s", r.OK, r.Seconds, r.Error)
		if r.OK && b.doBoot {
			say("boot the naive output")
			r.Boot = b.boot(ctx, r.Output, fw, filepath.Join(dir, "boot-naive.serial.log"))
			say("boot: login %v ssh %v", r.Boot.Booted, r.Boot.Network)
		}
	}
	if err := ctx.Err(); err != nil {
		return gr, err
	}
	if b.tools["v2v"] {
		say("virt-v2v -i disk %s", g.Top)
		r := b.runV2V(ctx, m.Name, g.Top, filepath.Join(dir, "v2v"))
		gr.V2V = &r
		say("virt-v2v: ok=%v %.0fs %s", r.OK, r.Seconds, r.Error)
		if r.OK && b.doBoot {
			say("boot the virt-v2v output")
			r.Boot = b.boot(ctx, r.Output, fw, filepath.Join(dir, "boot-v2v.serial.log"))
			say("boot: login %v ssh %v", r.Boot.Booted, r.Boot.Network)
		}
	}
	gr.LoadEnd = loadAvg()
	gr.Ratios = ratios(gr)
	return gr, ctx.Err()
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path+".tmp", append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("benchmigrate: %w", err)
	}
	return os.Rename(path+".tmp", path)
}
