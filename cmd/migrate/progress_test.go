package main

import (
	"strings"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/engine"
)

// TestProgressShowsRate: the line shows the rate the engine reports in
// every pass, the bulk pass included, and a rate below 1 GB/s is not
// rounded to 0.0, nor one below 1 MB/s to 0 (a dirty pass trickling
// pages under emulated KVM read "0 MB/s" for minutes).
func TestProgressShowsRate(t *testing.T) {
	for _, c := range []struct {
		pr   engine.Progress
		want string
	}{
		{engine.Progress{Phase: engine.PhaseBulk, Pass: 1, Throughput: 3.2e8, TotalPages: 100, PagesSent: 10}, "  320 MB/s"},
		{engine.Progress{Phase: engine.PhaseBulk, Pass: 1, Throughput: 4e7, TotalPages: 100}, "   40 MB/s"},
		{engine.Progress{Phase: engine.PhaseDirty, Pass: 3, Throughput: 1.93e9, TotalPages: 100}, " 1.93 GB/s"},
		{engine.Progress{Phase: engine.PhaseSetup}, "    0 MB/s"},
		{engine.Progress{Phase: engine.PhaseDirty, Pass: 8, Throughput: 3.6e5, TotalPages: 100}, "  360 kB/s"},
		{engine.Progress{Phase: engine.PhaseDirty, Pass: 8, Throughput: 999_400, TotalPages: 100}, "  999 kB/s"},
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

// TestProgressReconnecting: while the source reconnects in post-copy the
// line says so, and for how long, instead of a rate.
func TestProgressReconnecting(t *testing.T) {
	pr := engine.Progress{Phase: engine.PhasePostcopy, Mode: engine.ModePostcopy, TotalPages: 100, Remaining: 40,
		Throughput: 5e6, Reconnecting: 12300 * time.Millisecond}
	line := progressLine(pr, engine.PhasePostcopy, 0)
	if !strings.Contains(line, "connection lost, reconnecting for 12s") || strings.Contains(line, "MB/s") || !strings.Contains(line, "to arrive 40 pages") {
		t.Errorf("line %q", line)
	}
	pr.Reconnecting = 0
	if line := progressLine(pr, engine.PhasePostcopy, 0); strings.Contains(line, "reconnecting") || !strings.Contains(line, "5 MB/s") {
		t.Errorf("connected: line %q", line)
	}
}

// TestProgressTerminalRedraws: on a terminal the line is redrawn when it
// changed and at most every ttyRedraw within a phase, not at every status
// poll; a new phase is drawn at once.
func TestProgressTerminalRedraws(t *testing.T) {
	var out strings.Builder
	p := &progress{w: &out, tty: true}
	draws := func() int { return strings.Count(out.String(), "\r") }
	pr := engine.Progress{Phase: engine.PhaseDirty, Pass: 3, TotalPages: 100, Throughput: 1e8}
	for range 50 { // a second of polls, nothing changing
		p.update(pr)
	}
	if n := draws(); n != 1 {
		t.Fatalf("%d draws for 50 identical updates, want 1", n)
	}
	pr.Throughput = 2e8 // changed, but within ttyRedraw of the last draw
	p.update(pr)
	if n := draws(); n != 1 {
		t.Errorf("%d draws after a change within %v, want 1", n, ttyRedraw)
	}
	p.last = p.last.Add(-ttyRedraw)
	p.update(pr)
	if n := draws(); n != 2 {
		t.Errorf("%d draws after a change %v later, want 2", n, ttyRedraw)
	}
	p.last = p.last.Add(-ttyRedraw)
	p.update(pr) // unchanged, and time to redraw: still nothing new to show
	if n := draws(); n != 2 {
		t.Errorf("%d draws for an unchanged line, want 2", n)
	}
	pr.Phase = engine.PhaseStop
	p.update(pr)
	if n := draws(); n != 3 || !strings.Contains(out.String(), "stop-and-copy") {
		t.Errorf("%d draws, last %q: want the new phase drawn at once", n, out.String())
	}
}
