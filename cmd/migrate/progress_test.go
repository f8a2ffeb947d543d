package main

import (
	"strings"
	"testing"

	"github.com/ferryvm/ferry/framework/engine"
)

// TestProgressShowsRate: the line shows the rate the engine reports in
// every pass, the bulk pass included, and a rate below 1 GB/s is not
// rounded to 0.0.
func TestProgressShowsRate(t *testing.T) {
	for _, c := range []struct {
		pr   engine.Progress
		want string
	}{
		{engine.Progress{Phase: engine.PhaseBulk, Pass: 1, Throughput: 3.2e8, TotalPages: 100, PagesSent: 10}, "  320 MB/s"},
		{engine.Progress{Phase: engine.PhaseBulk, Pass: 1, Throughput: 4e7, TotalPages: 100}, "   40 MB/s"},
		{engine.Progress{Phase: engine.PhaseDirty, Pass: 3, Throughput: 1.93e9, TotalPages: 100}, " 1.93 GB/s"},
		{engine.Progress{Phase: engine.PhaseSetup}, "    0 MB/s"},
	} {
		var out strings.Builder
		p := newProgress(&out)
		p.update(c.pr)
		if !strings.Contains(out.String(), c.want) {
			t.Errorf("%s pass %d at %.0f B/s: line %q, want %q in it", c.pr.Phase, c.pr.Pass, c.pr.Throughput, out.String(), c.want)
		}
	}
}

// TestProgressPostcopyLastLine: once the guest ran on the destination,
// the last line (phase done) keeps post-copy's form, with no downtime
// estimate; a migration that ends from pre-copy keeps pre-copy's.
func TestProgressPostcopyLastLine(t *testing.T) {
	for _, c := range []struct {
		name   string
		phases []engine.Phase
		want   string
	}{
		{"postcopy", []engine.Phase{engine.PhaseState, engine.PhasePostcopy, engine.PhaseDone}, "guest runs on the destination"},
		{"precopy", []engine.Phase{engine.PhaseDirty, engine.PhaseStop, engine.PhaseDone}, "est. downtime"},
		{"switch failed", []engine.Phase{engine.PhaseStop, engine.PhaseState, engine.PhaseDone}, "est. downtime"},
	} {
		var out strings.Builder
		p := newProgress(&out)
		for _, ph := range c.phases {
			p.update(engine.Progress{Phase: ph, Mode: engine.ModePostcopy, TotalPages: 100})
		}
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		if last := lines[len(lines)-1]; !strings.HasPrefix(last, "done") || !strings.Contains(last, c.want) {
			t.Errorf("%s: last line %q, want %q in it", c.name, last, c.want)
		}
	}
}
