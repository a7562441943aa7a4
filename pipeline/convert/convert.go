package convert

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/h2kvm/h2kvm/internal/secretenv"
)

// Options configure Run.
type Options struct {
	// Format of the output: "qcow2" (default) or "raw".
	Format string
	// Compress writes compressed qcow2 clusters (smaller, slower).
	Compress bool
	// Progress, when set, receives the completed percentage as qemu-img reports it.
	Progress func(percent float64)
	// Check, when set, runs once the output is complete and synced, before it is renamed into
	// place. If it fails, the output stays under its temporary name (printed in the error) and
	// Run returns Check's error.
	Check func(ctx context.Context, tmp string) error
}

// Run copies the NBD export at uri into output with qemu-img, sparse-aware: ranges the export
// reports as holes or zeros are not written. The output is written under a temporary name in the
// same folder and renamed when complete, so a failed or interrupted conversion never leaves a
// partial file under the final name.
func Run(ctx context.Context, uri, output string, opt Options) error {
	format := opt.Format
	if format == "" {
		format = "qcow2"
	}
	if format != "qcow2" && format != "raw" {
		return fmt.Errorf("convert: output format %q: want qcow2 or raw", format)
	}
	if opt.Compress && format != "qcow2" {
		return fmt.Errorf("convert: compression needs qcow2 output")
	}
	dir := filepath.Dir(output)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(output)+".part-")
	if err != nil {
		return fmt.Errorf("convert: %w", err)
	}
	tmp.Close()
	done := false
	defer func() {
		if !done {
			os.Remove(tmp.Name())
		}
	}()

	args := []string{"convert", "-p", "-f", "raw", "-O", format}
	if format == "qcow2" {
		args = append(args, "-o", "compat=1.1")
	}
	if opt.Compress {
		args = append(args, "-c")
	}
	args = append(args, uri, tmp.Name())
	cmd := exec.CommandContext(ctx, "qemu-img", args...)
	cmd.Env = secretenv.Environ()
	cmd.WaitDelay = 5 * time.Second
	// qemu-img must not outlive this process: killed (SIGKILL), it could not remove the
	// temporary output, and an orphan would go on writing it for nothing.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("convert: qemu-img: %w", err)
	}
	readProgress(out, opt.Progress)
	if err := cmd.Wait(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("convert: qemu-img convert to %s: %w: %s", output, err, strings.TrimSpace(stderr.String()))
	}
	if err := syncFile(tmp.Name()); err != nil {
		return fmt.Errorf("convert: %w", err)
	}
	if opt.Check != nil {
		if err := opt.Check(ctx, tmp.Name()); err != nil {
			done = ctx.Err() == nil // keep the output for inspection, unless interrupted
			if done {
				return fmt.Errorf("%w (the output is left as %s)", err, tmp.Name())
			}
			return err
		}
	}
	if err := os.Rename(tmp.Name(), output); err != nil {
		return fmt.Errorf("convert: %w", err)
	}
	done = true
	return nil
}

// readProgress parses qemu-img's "    (12.34/100%)" updates, separated by carriage returns.
func readProgress(r io.Reader, fn func(float64)) {
	sc := bufio.NewScanner(r)
	sc.Split(func(data []byte, atEOF bool) (int, []byte, error) {
		if i := bytes.IndexAny(data, "\r\n"); i >= 0 {
			return i + 1, data[:i], nil
		}
		if atEOF && len(data) > 0 {
			return len(data), data, nil
		}
		return 0, nil, nil
	})
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		line = strings.TrimPrefix(line, "(")
		pct, _, ok := strings.Cut(line, "/100%")
		if !ok || fn == nil {
			continue
		}
		if v, err := strconv.ParseFloat(pct, 64); err == nil {
			fn(v)
		}
	}
}

func syncFile(name string) error {
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	err = f.Sync()
	return errors.Join(err, f.Close())
}
