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
