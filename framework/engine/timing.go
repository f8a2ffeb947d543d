package engine

import "time"

// Where a migration's time goes (Report's *_ms fields, docs/JOBS.md).
// Each side's setPhase tells its phaseClock when a phase begins, and
// the run marks the end of its work (the handover decided, or the
// failure) before it closes anything: what follows is teardown.
//
//	start ─ setup/waiting ─ bulk ─ dirty... ─ stop-and-copy ─ state ─┬─ teardown ─ report
//	        ConnectMS       BulkMS  DirtyMS   └──── SwitchoverMS ────┘   TeardownMS
//	└──────────────────────────────── TotalMS ──────────────────────────────────┘
type phaseClock struct {
	phase Phase
	since time.Time
	spent map[Phase]time.Duration
	work  time.Time // end of the work: teardown began; zero until marked
}

func newPhaseClock(p Phase, start time.Time) phaseClock {
	return phaseClock{phase: p, since: start, spent: map[Phase]time.Duration{}}
}

// enter records that phase p began at now (a no-op for the phase we are
// in); after the work ended, phases are not timed any more.
func (c *phaseClock) enter(p Phase, now time.Time) {
	if p == c.phase || !c.work.IsZero() {
		return
	}
	c.spent[c.phase] += now.Sub(c.since)
	c.phase, c.since = p, now
}

// workDone marks the end of the work (the first call counts): the phase
// in progress ends here.
func (c *phaseClock) workDone(now time.Time) {
	if c.work.IsZero() {
		c.enter(PhaseDone, now)
		c.work = now
	}
}

// fill writes the phase times and the teardown up to now into rep.
func (c *phaseClock) fill(rep *Report, now time.Time) {
	c.workDone(now)
	ms := func(ps ...Phase) int64 {
		var d time.Duration
		for _, p := range ps {
			d += c.spent[p]
		}
		return d.Milliseconds()
	}
	rep.ConnectMS = ms(PhaseSetup, PhaseWaiting)
	rep.BulkMS = ms(PhaseBulk)
	rep.DirtyMS = ms(PhaseDirty)
	rep.SwitchoverMS = ms(PhaseStop, PhaseState)
	rep.TeardownMS = now.Sub(c.work).Milliseconds()
}

// rateMeter is the current rate of page data for progress events: data
// pages over the last window of at least statsInterval within the pass
// in progress; until a pass has run that long, the rate since it began;
// before it sent any (a pass's first moments), the last pass's rate.
type rateMeter struct {
	pass    int
	t0      time.Time // window start
	n0      uint64    // data pages sent at t0
	current float64   // pages/s over the last closed window of this pass
}

// minRateWindow: a shorter stretch says nothing about a rate.
const minRateWindow = 20 * time.Millisecond

// rate returns data pages per second at now, given the pass in progress,
// the data pages sent so far and the last whole pass's rate.
func (m *rateMeter) rate(now time.Time, pass int, sent uint64, lastPass float64) float64 {
	if pass != m.pass || m.t0.IsZero() {
		m.pass, m.t0, m.n0, m.current = pass, now, sent, 0
		return lastPass
	}
	d := now.Sub(m.t0)
	if d < minRateWindow {
		if m.current > 0 {
			return m.current
		}
		return lastPass
	}
	r := float64(sent-m.n0) / d.Seconds()
	if d >= statsInterval {
		m.t0, m.n0, m.current = now, sent, r
	}
	return r
}
