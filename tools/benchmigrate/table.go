package main

import (
	"fmt"
	"io"
	"strings"
)

// Ratios are the numbers issues 4 and 5 ask for; nil when a side did not run or failed.
type Ratios struct {
	// H2KVMOverNaive and H2KVMOverV2V: end-to-end wall times.
	H2KVMOverNaive *float64 `json:"h2kvm_over_naive_time"`
	H2KVMOverV2V   *float64 `json:"h2kvm_over_v2v_time"`
	// Staging ÷ virtual size, output excluded and included.
	H2KVMStagingExcl *float64 `json:"h2kvm_staging_excl_output_over_virtual"`
	H2KVMStagingIncl *float64 `json:"h2kvm_staging_incl_output_over_virtual"`
	NaiveStagingExcl *float64 `json:"naive_staging_download_over_virtual"`
	NaiveStagingIncl *float64 `json:"naive_staging_incl_output_over_virtual"`
	// Bytes fetched from the source (benchhttp's count) ÷ allocated bytes of the chain.
	H2KVMFetchedOverAllocated *float64 `json:"h2kvm_fetched_over_allocated"`
	NaiveFetchedOverAllocated *float64 `json:"naive_fetched_over_allocated"`
	OverlayOverVirtual        *float64 `json:"h2kvm_overlay_over_virtual"`
	// H2KVMGuestSeconds: INSPECT+PLAN+FIX; NaiveFixSeconds: the fix step that worked.
	H2KVMGuestSeconds *float64 `json:"h2kvm_inspect_plan_fix_seconds"`
	NaiveFixSeconds   *float64 `json:"naive_fix_seconds"`
}

func div(a, b float64) *float64 {
	if b <= 0 {
		return nil
	}
	v := a / b
	return &v
}

func ptr(v float64) *float64 { return &v }

func ratios(g GuestResult) Ratios {
	var r Ratios
	virt, alloc := float64(g.VirtualBytes), float64(g.AllocatedBytes)
	h, n, v := g.H2KVM, g.Naive, g.V2V
	if h != nil && h.OK {
		r.H2KVMStagingExcl = div(float64(h.PeakStateBytes), virt)
		r.H2KVMStagingIncl = div(float64(h.PeakAllBytes), virt)
		r.H2KVMFetchedOverAllocated = div(float64(h.HTTPBytes), alloc)
		r.OverlayOverVirtual = div(float64(h.OverlayBytes), virt)
		r.H2KVMGuestSeconds = ptr(h.GuestSeconds)
		if n != nil && n.OK {
			r.H2KVMOverNaive = div(h.WallSeconds, n.Seconds)
		}
		if v != nil && v.OK {
			r.H2KVMOverV2V = div(h.WallSeconds, v.Seconds)
		}
	}
	if n != nil && len(n.Steps) > 0 {
		r.NaiveStagingExcl = div(float64(n.PeakDownloadBytes), virt)
		r.NaiveStagingIncl = div(float64(n.PeakAllBytes), virt)
		r.NaiveFetchedOverAllocated = div(float64(n.HTTPBytes), alloc)
		for _, s := range n.Steps {
			if strings.HasPrefix(s.Name, "fix") && s.OK {
				r.NaiveFixSeconds = ptr(s.Seconds)
			}
		}
	}
	return r
}

// f2 prints a ratio, or "n/a".
func f2(p *float64) string {
	if p == nil {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", *p)
}

func f3(p *float64) string {
	if p == nil {
		return "n/a"
	}
	return fmt.Sprintf("%.3f", *p)
}

func mib(n int64) string { return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20)) }

func bootCell(b *BootResult, ran bool) (login, ssh string) {
	switch {
	case !ran:
		return "no output", "no output"
	case b == nil:
		return "not booted", "not booted"
	}
	login, ssh = "NO", "NO"
	if b.Booted {
		login = fmt.Sprintf("yes (%.0f s)", b.LoginSeconds)
	}
	if b.Network {
		ssh = fmt.Sprintf("yes (%.0f s)", b.SSHSeconds)
	}
	why := ""
	switch {
	case b.FailedOn != "":
		why = fmt.Sprintf(" [%q after %.0f s]", b.FailedOn, b.Seconds)
	case b.TimedOut:
		why = fmt.Sprintf(" [timed out, %.0f s]", b.Seconds)
	case b.Exited != "":
		why = " [qemu exited: " + b.Exited + "]"
	case b.Error != "":
		why = " [" + b.Error + "]"
	}
	if !b.Booted {
		login += why
	}
	if !b.Network {
		ssh += why
	}
	return login, ssh
}

// printGuest prints one guest's table and ratios.
func printGuest(w io.Writer, g GuestResult) {
	r := g.Ratios
	fmt.Fprintf(w, "\n== %s (%s): virtual %s, allocated %s (qemu-img map of the chain), chain files %s   [load %s → %s]\n",
		g.Guest, g.Firmware, mib(g.VirtualBytes), mib(g.AllocatedBytes), mib(g.ChainFileBytes), g.LoadStart, g.LoadEnd)
	rows := [][]string{{"measure", "h2kvm migrate", "naive (curl, convert, fix)", "virt-v2v"}}
	h, n, v := g.H2KVM, g.Naive, g.V2V
	col := func(hs, ns, vs string) []string { return []string{hs, ns, vs} }
	hs, ns, vs := "not run", "not run", "not run"
	if h != nil {
		hs = fmt.Sprintf("%.1f s", h.WallSeconds)
		if !h.OK {
			hs = "FAILED after " + hs
		}
	}
	if n != nil {
		ns = fmt.Sprintf("%.1f s", n.Seconds)
		if !n.OK {
			ns = fmt.Sprintf("FAILED after %.1f s", n.WithFailedSeconds)
		} else if n.WithFailedSeconds > n.Seconds+0.05 {
			ns += fmt.Sprintf(" (%.1f s with the failed virt-customize)", n.WithFailedSeconds)
		}
	}
	if v != nil {
		vs = fmt.Sprintf("%.1f s", v.Seconds)
		if !v.OK {
			vs = "FAILED after " + vs
		}
	}
	rows = append(rows, append([]string{"end-to-end"}, col(hs, ns, vs)...))
	stepOf := func(name string) string {
		if n == nil {
			return "-"
		}
		var parts []string
		for _, s := range n.Steps {
			if strings.HasPrefix(s.Name, name) {
				st := fmt.Sprintf("%.1f s", s.Seconds)
				if s.Name != name {
					st = strings.TrimPrefix(s.Name, name+": ") + " " + st
				}
				if !s.OK {
					st += " FAILED"
				}
				parts = append(parts, st)
			}
		}
		if len(parts) == 0 {
			return "-"
		}
		return strings.Join(parts, "; ")
	}
	stage := func(names ...string) string {
		if h == nil || h.StageSeconds == nil {
			return "-"
		}
		var t float64
		for _, s := range names {
			t += h.StageSeconds[s]
		}
		return fmt.Sprintf("%.1f s", t)
	}
	rows = append(rows,
		[]string{"  fetch/download", stage("fetch", "flatten") + " (lazy)", stepOf("download"), "-"},
		[]string{"  inspect+plan+fix", stage("inspect", "plan", "fix"), stepOf("fix"), "-"},
		[]string{"  convert", stage("convert"), stepOf("convert"), "-"},
		[]string{"  validate (XML, no boot)", stage("validate"), "-", "-"},
	)
	var hf, nf string = "-", "-"
	if h != nil {
		hf = fmt.Sprintf("%s (%s, %d requests)", f3(r.H2KVMFetchedOverAllocated), mib(h.HTTPBytes), h.HTTPRequests)
	}
	if n != nil {
		nf = fmt.Sprintf("%s (%s)", f3(r.NaiveFetchedOverAllocated), mib(n.HTTPBytes))
	}
	vf := "-"
	if v != nil {
		vf = "local files"
	}
	rows = append(rows, []string{"fetched / allocated", hf, nf, vf})
	var he, hi, ne, ni = "-", "-", "-", "-"
	if h != nil {
		he = fmt.Sprintf("%s (%s)", f3(r.H2KVMStagingExcl), mib(h.PeakStateBytes))
		hi = fmt.Sprintf("%s (%s)", f3(r.H2KVMStagingIncl), mib(h.PeakAllBytes))
	}
	if n != nil {
		ne = fmt.Sprintf("%s (%s, download)", f3(r.NaiveStagingExcl), mib(n.PeakDownloadBytes))
		ni = fmt.Sprintf("%s (%s)", f3(r.NaiveStagingIncl), mib(n.PeakAllBytes))
	}
	rows = append(rows,
		[]string{"peak staging / virtual, output excluded", he, ne, "-"},
		[]string{"peak staging / virtual, output included", hi, ni, "-"},
	)
	ov := "-"
	if h != nil {
		ov = fmt.Sprintf("%s (%s)", f3(r.OverlayOverVirtual), mib(h.OverlayBytes))
	}
	rows = append(rows, []string{"overlay written / virtual", ov, "- (writes into the copy)", "-"})
	var logins, sshs [3]string
	for i, x := range []struct {
		b   *BootResult
		ran bool
	}{
		{bootOf(h), h != nil && h.OK},
		{bootOfN(n), n != nil && n.OK},
		{bootOfV(v), v != nil && v.OK},
	} {
		logins[i], sshs[i] = bootCell(x.b, x.ran)
	}
	rows = append(rows,
		append([]string{"boots: login prompt"}, logins[:]...),
		append([]string{"boots: SSH banner"}, sshs[:]...),
	)
	printRows(w, rows)
	fmt.Fprintf(w, "ratios: h2kvm/naive time %s; h2kvm/virt-v2v time %s; h2kvm inspect+plan+fix %s s (naive fix %s s)\n",
		f2(r.H2KVMOverNaive), f2(r.H2KVMOverV2V), f2(r.H2KVMGuestSeconds), f2(r.NaiveFixSeconds))
	fmt.Fprintf(w, "        staging/virtual h2kvm %s excl. output, %s incl.; naive %s download, %s incl. qcow2\n",
		f3(r.H2KVMStagingExcl), f3(r.H2KVMStagingIncl), f3(r.NaiveStagingExcl), f3(r.NaiveStagingIncl))
	fmt.Fprintf(w, "        fetched/allocated h2kvm %s, naive %s; overlay/virtual %s\n",
		f3(r.H2KVMFetchedOverAllocated), f3(r.NaiveFetchedOverAllocated), f3(r.OverlayOverVirtual))
	for _, e := range []struct{ who, err string }{{"h2kvm", errOf(h)}, {"naive", errOfN(n)}, {"virt-v2v", errOfV(v)}} {
		if e.err != "" {
			fmt.Fprintf(w, "%s failed: %s\n", e.who, e.err)
		}
	}
}

func bootOf(h *H2KVMResult) *BootResult {
	if h == nil {
		return nil
	}
	return h.Boot
}

func bootOfN(n *NaiveResult) *BootResult {
	if n == nil {
		return nil
	}
	return n.Boot
}

func bootOfV(v *V2VResult) *BootResult {
	if v == nil {
		return nil
	}
	return v.Boot
}

func errOf(h *H2KVMResult) string {
	if h == nil {
		return ""
	}
	return h.Error
}

func errOfN(n *NaiveResult) string {
	if n == nil {
		return ""
	}
	return n.Error
}

func errOfV(v *V2VResult) string {
	if v == nil {
		return ""
	}
	return v.Error
}

// printRows prints rows as a table with columns padded to their widest cell.
func printRows(w io.Writer, rows [][]string) {
	width := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, c := range r {
			if l := len([]rune(c)); l > width[i] {
				width[i] = l
			}
		}
	}
	for _, r := range rows {
		var b strings.Builder
		for i, c := range r {
			if i > 0 {
				b.WriteString(" | ")
			}
			b.WriteString(c)
			if i < len(r)-1 {
				b.WriteString(strings.Repeat(" ", width[i]-len([]rune(c))))
			}
		}
		fmt.Fprintln(w, b.String())
	}
}
