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
	ns := d.nbd.ServerStats()
	for _, m := range []struct {
		name, help, typ string
		val             float64
	}{
		{"h2kvm_nbd_connections", "NBD clients connected (negotiating or transmitting).", "gauge", float64(ns.Connections)},
		{"h2kvm_nbd_refused_connections_total", "NBD connections closed on accept at the connection limit.", "counter", float64(ns.Refused)},
		{"h2kvm_nbd_dropped_connections_total", "NBD connections cut because replies could not be written in time.", "counter", float64(ns.Dropped)},
		{"h2kvm_nbd_buffered_bytes", "NBD payload bytes held by requests in flight.", "gauge", float64(ns.BufferedBytes)},
		{"h2kvm_nbd_buffered_bytes_peak", "Highest NBD payload bytes held in flight.", "gauge", float64(ns.PeakBufferedBytes)},
	} {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n%s %g\n", m.name, m.help, m.name, m.typ, m.name, m.val)
	}
}
