package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/h2kvm/h2kvm/pipeline/migrate"
)

// loadAvg is the first three fields of /proc/loadavg ("" when unreadable).
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// sampler keeps the peak disk use of groups of paths, sampled every interval until stop.
type sampler struct {
	groups [][]string
	done   chan struct{}
	wg     sync.WaitGroup

	mu    sync.Mutex
	peaks []int64
	n     int // samples taken
}

// startSampler samples each group (the sum over its paths) at once and then every interval.
func startSampler(interval time.Duration, groups ...[]string) *sampler {
	s := &sampler{groups: groups, done: make(chan struct{}), peaks: make([]int64, len(groups))}
	s.sample()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-s.done:
				return
			case <-t.C:
				s.sample()
			}
		}
	}()
	return s
}

func (s *sampler) sample() {
	for i, g := range s.groups {
		v := migrate.DiskUse(g...)
		s.mu.Lock()
		if v > s.peaks[i] {
			s.peaks[i] = v
		}
		s.mu.Unlock()
	}
	s.mu.Lock()
	s.n++
	s.mu.Unlock()
}

// stop ends sampling, takes one last sample and returns the peak of each group and the number
// of samples.
func (s *sampler) stop() ([]int64, int) {
	close(s.done)
	s.wg.Wait()
	s.sample()
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int64(nil), s.peaks...), s.n
}

// runLogged runs name args with env added to this process's environment, its stdout and stderr
// appended to logPath, bounded by timeout. It runs in its own process group, which is killed
// on timeout or when ctx ends. It returns the wall time.
func runLogged(ctx context.Context, timeout time.Duration, logPath string, env []string, name string, args ...string) (time.Duration, error) {
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, fmt.Errorf("benchmigrate: log: %w", err)
	}
	defer lf.Close()
	fmt.Fprintf(lf, "\n$ %s %s\n", name, strings.Join(args, " "))
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	start := time.Now()
	err = cmd.Run()
	d := time.Since(start)
	if err != nil {
		if ctx.Err() == context.DeadlineExceeded {
			return d, fmt.Errorf("%s: timed out after %s", name, timeout)
		}
		return d, fmt.Errorf("%s: %w", name, err)
	}
	return d, nil
}

// lastLines returns up to n non-empty lines of the file's end that contain any of keys (all
// lines when keys is empty), newest last.
func lastLines(path string, n int, keys ...string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []string
	lines := strings.Split(string(b), "\n")
	for i := len(lines) - 1; i >= 0 && len(out) < n; i-- {
		l := strings.TrimSpace(lines[i])
		if l == "" {
			continue
		}
		if len(keys) == 0 {
			out = append(out, l)
			continue
		}
		for _, k := range keys {
			if strings.Contains(l, k) {
				out = append(out, l)
				break
			}
		}
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

// imageInfo is what qemu-img says about an image (or a chain through its top).
type imageInfo struct {
	VirtualSize int64 `json:"virtual-size"`
	Format      string
}

func qemuImgInfo(ctx context.Context, path string) (imageInfo, error) {
	var info imageInfo
	out, err := exec.CommandContext(ctx, "qemu-img", "info", "--output=json", path).Output()
	if err != nil {
		return info, fmt.Errorf("benchmigrate: qemu-img info %s: %w", path, exitText(err))
	}
	if err := json.Unmarshal(out, &info); err != nil {
		return info, fmt.Errorf("benchmigrate: qemu-img info %s: %w", path, err)
	}
	return info, nil
}

// mappedData sums the lengths of the "data": true ranges of qemu-img map over the image (for a
// chain's top: of the flattened chain): the bytes a reader cannot do without.
func mappedData(ctx context.Context, path string) (int64, error) {
	out, err := exec.CommandContext(ctx, "qemu-img", "map", "--output=json", path).Output()
	if err != nil {
		return 0, fmt.Errorf("benchmigrate: qemu-img map %s: %w", path, exitText(err))
	}
	return sumData(out)
}

// sumData sums the data ranges of a qemu-img map --output=json document.
func sumData(doc []byte) (int64, error) {
	var ranges []struct {
		Length int64 `json:"length"`
		Data   bool  `json:"data"`
	}
	if err := json.Unmarshal(doc, &ranges); err != nil {
		return 0, fmt.Errorf("benchmigrate: qemu-img map output: %w", err)
	}
	var n int64
	for _, r := range ranges {
		if r.Data {
			n += r.Length
		}
	}
	return n, nil
}

func exitText(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) && len(ee.Stderr) > 0 {
		return fmt.Errorf("%w: %s", err, strings.TrimSpace(string(ee.Stderr)))
	}
	return err
}

// httpServer is a running tools/benchhttp.
type httpServer struct {
	URL string // base URL, ends in "/"
	cmd *exec.Cmd
}

// startHTTP starts the benchhttp binary serving dir and waits for its URL.
func startHTTP(ctx context.Context, bin, dir, work string) (*httpServer, error) {
	urlFile := filepath.Join(work, "http.url")
	os.Remove(urlFile)
	cmd := exec.Command(bin, "-dir", dir, "-url-file", urlFile)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("benchmigrate: start %s: %w", bin, err)
	}
	s := &httpServer{cmd: cmd}
	for range 200 {
		if b, err := os.ReadFile(urlFile); err == nil && len(b) > 0 {
			s.URL = strings.TrimSpace(string(b))
			return s, nil
		}
		select {
		case <-ctx.Done():
			s.Close()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	s.Close()
	return nil, fmt.Errorf("benchmigrate: %s wrote no URL into %s", bin, urlFile)
}

// httpStats is what benchhttp has counted since its last reset.
type httpStats struct {
	Bytes    int64 `json:"bytes"`
	Requests int64 `json:"requests"`
	Conns    int64 `json:"conns"`
}

func (s *httpServer) Stats(ctx context.Context) (httpStats, error) {
	var st httpStats
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+".stats", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, fmt.Errorf("benchmigrate: benchhttp stats: %w", err)
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&st)
	return st, err
}

func (s *httpServer) Reset(ctx context.Context) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+".stats/reset", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("benchmigrate: benchhttp reset: %w", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return nil
}

func (s *httpServer) Close() {
	s.cmd.Process.Kill()
	s.cmd.Wait()
}
