package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/h2kvm/h2kvm/pipeline/migrate"
)

// H2KVMResult is the measure of one `h2kvm migrate`.
type H2KVMResult struct {
	OK      bool     `json:"ok"`
	Error   string   `json:"error,omitempty"`
	Command []string `json:"command"`
	Log     string   `json:"log"`
	Output  string   `json:"output,omitempty"` // the qcow2
	Load    string   `json:"load_before"`
	// WallSeconds is the process's wall time, measured outside; StageSeconds from report.json.
	WallSeconds  float64            `json:"wall_seconds"`
	StageSeconds map[string]float64 `json:"stage_seconds,omitempty"`
	// GuestSeconds = INSPECT + PLAN + FIX (report.json).
	GuestSeconds float64 `json:"inspect_plan_fix_seconds"`
	// HTTPBytes and HTTPRequests: counted by benchhttp; ReportFetched: report.json fetched_bytes.
	HTTPBytes     int64 `json:"http_bytes"`
	HTTPRequests  int64 `json:"http_requests"`
	ReportFetched int64 `json:"report_fetched_bytes"`
	// ReportAllocated is report.json allocated_bytes (h2kvm's sum over the chain's links).
	ReportAllocated int64 `json:"report_allocated_bytes"`
	OverlayBytes    int64 `json:"overlay_bytes"`
	OutputBytes     int64 `json:"output_bytes"`
	// PeakStateBytes: OUTPUT/.h2kvm (overlays, cache, job record), output excluded.
	// PeakAllBytes: the whole output folder, the qcow2 being written included.
	// ReportPeakStaging: report.json's own (1 s) sampling of the state folder.
	PeakStateBytes    int64       `json:"peak_staging_excl_output_bytes"`
	PeakAllBytes      int64       `json:"peak_staging_incl_output_bytes"`
	ReportPeakStaging int64       `json:"report_peak_staging_bytes"`
	Samples           int         `json:"samples"`
	Boot              *BootResult `json:"boot,omitempty"`
}

// readReport reads the job record h2kvm migrate writes as report.json.
func readReport(path string) (migrate.Job, error) {
	var r migrate.Job
	b, err := os.ReadFile(path)
	if err != nil {
		return r, fmt.Errorf("benchmigrate: %w", err)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("benchmigrate: %s: %w", path, err)
	}
	return r, nil
}

// runH2KVM migrates the chain top served at url into dir (which must not exist).
func (b *bench) runH2KVM(ctx context.Context, g *GuestResult, srv *httpServer, topName, dir string) H2KVMResult {
	res := H2KVMResult{Load: loadAvg(), Log: filepath.Join(dir + ".log")}
	src := srv.URL + topName
	res.Command = []string{b.bin, "migrate", src, "--output", dir, "--name", g.Guest}
	if b.cacheLimit != "" {
		res.Command = append(res.Command, "--cache-limit", b.cacheLimit)
	}
	if err := srv.Reset(ctx); err != nil {
		res.Error = err.Error()
		return res
	}
	smp := startSampler(b.interval, []string{filepath.Join(dir, ".h2kvm")}, []string{dir})
	d, err := runLogged(ctx, b.stepTimeout, res.Log, b.env("H2KVM_KVM=off"), res.Command[0], res.Command[1:]...)
	peaks, n := smp.stop()
	res.WallSeconds = d.Seconds()
	res.PeakStateBytes, res.PeakAllBytes, res.Samples = peaks[0], peaks[1], n
	if st, serr := srv.Stats(ctx); serr == nil {
		res.HTTPBytes, res.HTTPRequests = st.Bytes, st.Requests
	}
	rep, rerr := readReport(filepath.Join(dir, "report.json"))
	if rerr == nil {
		res.StageSeconds = map[string]float64{}
		for s, r := range rep.Stages {
			res.StageSeconds[string(s)] = r.Seconds
			if r.Status == "failed" && err == nil {
				err = fmt.Errorf("stage %s failed: %s", s, r.Error)
			}
		}
		res.GuestSeconds = res.StageSeconds["inspect"] + res.StageSeconds["plan"] + res.StageSeconds["fix"]
		res.ReportFetched, res.ReportAllocated = rep.FetchedBytes, rep.AllocatedBytes
		res.OverlayBytes, res.OutputBytes, res.ReportPeakStaging = rep.OverlayBytes, rep.OutputBytes, rep.PeakStagingBytes
		if len(rep.Outputs) == 1 {
			res.Output = rep.Outputs[0]
		}
	}
	switch {
	case err != nil:
		res.Error = fmt.Sprintf("%v; log %s: %v", err, res.Log, lastLines(res.Log, 3))
	case rerr != nil:
		res.Error = rerr.Error()
	case res.Output == "":
		res.Error = "report.json names no single output disk"
	default:
		res.OK = true
	}
	return res
}
