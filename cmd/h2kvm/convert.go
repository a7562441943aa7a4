package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/h2kvm/h2kvm/daemon"
	"github.com/h2kvm/h2kvm/pipeline/convert"
	"github.com/h2kvm/h2kvm/vfs/source"
)

// ConvertCmd is `h2kvm convert`.
type ConvertCmd struct {
	Source     string `arg:"" help:"The disk: a .vmdk descriptor or monolithic file, ova:ARCHIVE#MEMBER, https://…, ssh://…, nbd://…."`
	Output     string `arg:"" help:"The file to write (written under a temporary name, renamed when complete)."`
	Format     string `short:"O" enum:"qcow2,raw" default:"qcow2" help:"Output format: ${enum}."`
	Compress   bool   `help:"Compress qcow2 clusters."`
	JSON       bool   `help:"Report progress and the result as JSON lines on stdout."`
	CacheLimit Size   `default:"1GiB" placeholder:"SIZE" help:"Local disk for caching remote blocks (removed at exit)."`
}

func (c *ConvertCmd) Help() string {
	return `Flattens a VMDK chain and converts it with qemu-img straight from an NBD export of the
chain: no intermediate copy exists, holes and zeroed ranges are not written, remote blocks are
fetched once. The guest is not changed (see 'h2kvm migrate' for that).`
}

func (c *ConvertCmd) Run(ctx context.Context, g *Globals) error {
	if _, err := os.Stat(c.Output); err == nil {
		return usageErrorf("%s exists; remove it first or choose another name", c.Output)
	}
	start := time.Now()
	cfg, err := source.ConfigFromEnv()
	if err != nil {
		return err
	}
	emb, err := daemon.StartEmbedded(ctx, daemon.EmbeddedOptions{CacheLimit: int64(c.CacheLimit), Source: cfg, Logger: g.Log})
	if err != nil {
		return err
	}
	defer emb.Close()
	if _, err := emb.CreateExport(ctx, daemon.ExportSpec{Name: "disk", Source: c.Source, ReadOnly: true, Transient: true}); err != nil {
		return err
	}
	p := newProgress(g.Stdout, os.Stderr, c.JSON, "convert")
	err = convert.Run(ctx, emb.NBDURI("disk"), c.Output, convert.Options{
		Format: c.Format, Compress: c.Compress, Progress: p.update,
	})
	p.done()
	if err != nil {
		return err
	}
	info, _ := emb.GetExport(ctx, "disk")
	st, _ := os.Stat(c.Output)
	var outBytes int64
	if st != nil {
		outBytes = st.Size()
	}
	if c.JSON {
		return json.NewEncoder(g.Stdout).Encode(map[string]any{
			"event": "done", "output": c.Output, "format": c.Format, "output_bytes": outBytes,
			"virtual_size": info.VirtualSize, "fetched_bytes": info.Stats.FetchedBytes,
			"seconds": time.Since(start).Seconds(),
		})
	}
	fmt.Fprintf(g.Stdout, "%s: %s, %s virtual, file %s, %.1fs\n", c.Output, c.Format,
		humanBytes(info.VirtualSize), humanBytes(outBytes), time.Since(start).Seconds())
	return nil
}

// progress shows a long stage's completion: a bar on a terminal, JSON lines with --json.
type progress struct {
	out, tty io.Writer
	json     bool
	stage    string
	last     float64
	shown    bool
	isTTY    bool
}

func newProgress(stdout io.Writer, stderr *os.File, asJSON bool, stage string) *progress {
	st, err := stderr.Stat()
	return &progress{out: stdout, tty: stderr, json: asJSON, stage: stage, last: -1,
		isTTY: err == nil && st.Mode()&os.ModeCharDevice != 0}
}

func (p *progress) update(pct float64) {
	if pct < p.last+1 && pct < 100 {
		return
	}
	p.last = pct
	switch {
	case p.json:
		json.NewEncoder(p.out).Encode(map[string]any{"event": "progress", "stage": p.stage, "percent": pct})
	case p.isTTY:
		n := int(pct / 2.5)
		fmt.Fprintf(p.tty, "\r%-8s [%-40s] %5.1f%%", p.stage, strings.Repeat("=", n), pct)
		p.shown = true
	}
}

func (p *progress) done() {
	if p.shown {
		fmt.Fprintln(p.tty)
	}
}
