package daemon

import (
	"fmt"
	"io"
	"strconv"
)

// writeMetrics writes the Prometheus text exposition of the daemon's counters.
func (d *Daemon) writeMetrics(w io.Writer) {
	exps := d.ListExports()
	type metric struct {
		name, help, typ string
		val             func(ExportStats) float64
	}
	ms := []metric{
		{"h2kvm_export_fetched_bytes_total", "Bytes fetched from remote sources.", "counter", func(s ExportStats) float64 { return float64(s.FetchedBytes) }},
		{"h2kvm_export_fetch_requests_total", "Read requests sent to remote sources.", "counter", func(s ExportStats) float64 { return float64(s.FetchRequests) }},
		{"h2kvm_export_cache_hit_bytes_total", "Bytes served from the local cache.", "counter", func(s ExportStats) float64 { return float64(s.CacheHitBytes) }},
		{"h2kvm_export_cache_hits_total", "Reads served from the local cache.", "counter", func(s ExportStats) float64 { return float64(s.CacheHits) }},
		{"h2kvm_export_cached_bytes", "Bytes of remote files held in the local cache.", "gauge", func(s ExportStats) float64 { return float64(s.CachedBytes) }},
		{"h2kvm_export_overlay_bytes", "Bytes held by the copy-on-write overlay.", "gauge", func(s ExportStats) float64 { return float64(s.OverlayBytes) }},
		{"h2kvm_export_nbd_connections", "NBD clients connected.", "gauge", func(s ExportStats) float64 { return float64(s.NBDConnections) }},
		{"h2kvm_export_nbd_requests_total", "NBD requests handled.", "counter", func(s ExportStats) float64 { return float64(s.NBDRequests) }},
		{"h2kvm_export_nbd_errors_total", "NBD requests answered with an error.", "counter", func(s ExportStats) float64 { return float64(s.NBDErrors) }},
		{"h2kvm_export_nbd_read_bytes_total", "Bytes read by NBD clients.", "counter", func(s ExportStats) float64 { return float64(s.NBDBytesRead) }},
	}
	for _, m := range ms {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", m.name, m.help, m.name, m.typ)
		for _, e := range exps {
			fmt.Fprintf(w, "%s{export=%s} %g\n", m.name, strconv.Quote(e.Name), m.val(e.Stats))
		}
	}
	fmt.Fprintf(w, "# HELP h2kvm_exports Exports served.\n# TYPE h2kvm_exports gauge\nh2kvm_exports %d\n", len(exps))
	fmt.Fprintf(w, "# HELP h2kvm_cache_limit_bytes Local disk the caches may use.\n# TYPE h2kvm_cache_limit_bytes gauge\nh2kvm_cache_limit_bytes %d\n", d.budget.Limit())
	fmt.Fprintf(w, "# HELP h2kvm_cache_used_bytes Local disk the caches use.\n# TYPE h2kvm_cache_used_bytes gauge\nh2kvm_cache_used_bytes %d\n", d.budget.Used())
}
