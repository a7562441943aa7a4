package migrate

import (
	"context"

	"github.com/h2kvm/h2kvm/fixers"
)

// The FIX stage records each change in the job record as the fixers make it, so that a job
// killed during FIX keeps the before and after of what it already changed: the resumed run's
// fixers find those files fixed (the overlay kept the writes) and record nothing for them.
// On resume the recorded changes are merged with the new run's.

// fixRecorder keeps the job record's Fixes up to date during one FIX run.
type fixRecorder struct {
	r     *runner
	ctx   context.Context
	prior *fixers.Report // recorded by earlier, interrupted runs of FIX; may be nil
	run   fixers.Report  // this run's changes so far
}

func (r *runner) newFixRecorder(ctx context.Context) *fixRecorder {
	return &fixRecorder{r: r, ctx: context.WithoutCancel(ctx), prior: r.job.Fixes}
}

// record, the fixer's onChange callback, adds one change of this run to the job record and
// saves the record before the fixers go on.
func (f *fixRecorder) record(c fixers.Change) {
	f.run.Add(c)
	f.r.job.Fixes = mergeFixes(f.prior, &f.run)
	f.r.save(f.ctx)
	f.r.emit(Event{Stage: Fix, Status: "change", Message: c.String()})
}

// finish merges Apply's full report (warnings and timings included) into the job record.
func (f *fixRecorder) finish(rep *fixers.Report) {
	if rep == nil {
		rep = &f.run
	}
	f.r.job.Fixes = mergeFixes(f.prior, rep)
}

// mergeFixes combines the changes an interrupted FIX recorded (prior) with those of the run that
// resumed it, so that every change is listed once. A change of run with the same fix, file and
// action as a prior one not yet matched is the same change made again (the interrupted run's
// write did not reach the overlay) or its continuation: they become one change with the prior
// Before and the later After. Other changes of run follow the prior ones in their order.
// Warnings are kept once each; timings of run replace those of prior. Every change of the
// result has its secrets redacted (fixers.RedactChange), whichever fixer recorded it, so that
// neither the job record nor the reports hold them. Neither input is modified; the result is
// nil only when both are.
func mergeFixes(prior, run *fixers.Report) *fixers.Report {
	if prior == nil && run == nil {
		return nil
	}
	out := &fixers.Report{Changes: []fixers.Change{}}
	if prior != nil {
		out.Changes = append(out.Changes, prior.Changes...)
	}
	matched := make([]bool, len(out.Changes))
	if run != nil {
	next:
		for _, c := range run.Changes {
			for i, p := range out.Changes[:len(matched)] {
				if matched[i] || p.Fix != c.Fix || p.File != c.File || p.Action != c.Action {
					continue
				}
				matched[i] = true
				m := &out.Changes[i]
				if m.Before == "" {
					m.Before = c.Before
				}
				m.After = c.After
				if c.Seconds > 0 {
					m.Seconds = c.Seconds
				}
				continue next
			}
			out.Changes = append(out.Changes, c)
		}
	}
	for i, c := range out.Changes {
		out.Changes[i] = fixers.RedactChange(c)
	}
	seen := map[string]bool{}
	for _, r := range []*fixers.Report{prior, run} {
		if r == nil {
			continue
		}
		for _, w := range r.Warnings {
			if !seen[w] {
				seen[w] = true
				out.Warnings = append(out.Warnings, w)
			}
		}
		for id, s := range r.Seconds {
			if out.Seconds == nil {
				out.Seconds = map[string]float64{}
			}
			out.Seconds[id] = s
		}
	}
	return out
}
