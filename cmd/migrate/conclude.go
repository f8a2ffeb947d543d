package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/job"
	"github.com/ferryvm/ferry/vmm/api"
)

// The outcome of a run (conclude): from the source's last status, or the
// error that ended following it, the report and the reason migrate
// fails with, with the resolve or the cleanup each outcome asks for.
// A completed handover's end is finish.go's.

// conclude turns the source's last status (src, or the error that ended
// following it) into migrate's report and outcome: the destination's
// report when completed, a resolve when the handover is unknown, the
// lost-guest text when post-copy broke, a cleanup otherwise.
func conclude(j *job.Job, rep report, src api.Migration, err error, rs *resolver, log io.Writer) (report, error) {
	if src.Report != nil {
		rep.Report = *src.Report
	}
	if err != nil {
		// Following the source failed (it stopped answering): what the
		// two sides say now decides. A source that was told to shut down
		// in post-copy exits as soon as its last page went out, possibly
		// before its final status was read; the destination then runs the
		// guest and holds the report that matters.
		v, rerr := rs.resolve()
		if v == verdictMoved {
			fmt.Fprintf(log, "migrate: the source stopped answering (%v); the guest runs on the destination\n", err)
			rep.Status, rep.Error, rep.Resolved = engine.StatusCompleted, "", "destination"
			if rep.Mode == "" {
				rep.Mode = src.Progress.Mode
			}
			return finishCompleted(j, rep, rs.id, &rs.rec, log)
		}
		placedNowhere := rerr != nil && (v == verdictManual || v == verdictLost) // and BOTH: the run's own error, below
		if rerr != nil && !placedNowhere && !sawBoth(v, rerr) {
			fmt.Fprintln(log, "migrate: cleaning up:", rerr)
		}
		var silent stoppedAnswering
		var moved movedOn
		var notSrc *errNotSource
		switch {
		case src.Report != nil || src.Progress.Phase == "":
		case errors.As(err, &silent):
			err = fmt.Errorf("the source stopped answering during the migration (%s, pass %d): %w", src.Progress.Phase, src.Progress.Pass, err)
			fromProgress(&rep.Report, src.Progress)
		case errors.As(err, &moved), errors.As(err, &notSrc):
			err = fmt.Errorf("last seen in %s, pass %d: %w", src.Progress.Phase, src.Progress.Pass, err)
			fromProgress(&rep.Report, src.Progress)
		}
		if sawBoth(v, rerr) {
			// Both sides say they run the guest, or were seen running
			// it: the report says so (resolved both, BOTH first in its
			// error), as after a handover-unknown whose resolve found
			// both running. Before TestBothRunResolvedSaysBoth's case of
			// a source that stopped answering (and, for a guest seen
			// running on both, TestBothRanResolvedSaysBoth's), BOTH was
			// on stderr only, as "cleaning up", and the report said
			// failed with no resolved.
			return bothSeen(rep, rerr, err)
		}
		if placedNowhere {
			// The resolve placed the guest on no side: unresolved (its
			// only copy may wait, paused, on the destination for the
			// resume manual printed), or lost. The status stays failed
			// (the source's own report never came), which alone reads as
			// the guest on the source, so the reason says that first, the
			// stopped answering after it, as a handover-unknown's does.
			// Until TestStoppedAnsweringUnresolvedSaysSo it said the
			// stopped answering alone, the rest on stderr as "cleaning up".
			err = fmt.Errorf("%w (%w)", rerr, err)
		}
		rep.Error = err.Error()
		return rep, err
	}
	switch rep.Status {
	case engine.StatusCompleted: // no resolve ran: its quit is the run's end, not a resolve's act
		return finishCompleted(j, rep, rs.id, nil, log)
	case engine.StatusHandoverUnknown:
		fmt.Fprintf(log, "migrate: handover unknown%s; resolving\n", parenCause(rep.Error))
		v, rerr := rs.resolve()
		rep.Resolved = map[verdict]string{verdictMoved: "destination", verdictSource: "source", verdictBothRun: resolvedBoth}[v]
		if v == verdictMoved {
			return finishCompleted(j, rep, rs.id, &rs.rec, log)
		}
		if sawBoth(v, rerr) { // the report's error says BOTH, keeping the handover's own
			rep.Resolved = resolvedBoth
			return failedWith(rep, rerr)
		}
		if rerr != nil {
			return rep, rerr
		}
		return rep, fmt.Errorf("%s (resolved: the guest runs on the source)", withCause("migration failed in the handover", rep.Error))
	}
	if rep.Status == engine.StatusPostcopyBroken {
		// The destination decides: one whose post-copy completed (every
		// page there, though the source never heard it) runs the guest.
		// Otherwise nothing is cleaned up or resolved: no side may run
		// the guest again (the resolver says so).
		v, rerr := rs.resolve()
		if v == verdictMoved {
			fmt.Fprintf(log, "migrate: the source gave post-copy up%s, but the destination holds every page and runs the guest\n", parenCause(rep.Error))
			rep.Status, rep.Error, rep.Resolved = engine.StatusCompleted, "", "destination"
			return finishCompleted(j, rep, rs.id, &rs.rec, log)
		}
		err := fmt.Errorf("%s (the guest is lost; the source stays paused)", withCause("migration "+string(engine.StatusPostcopyBroken), rep.Error))
		if sawBoth(v, rerr) { // a source that said it ran the guest after its post-copy broke
			return bothSeen(rep, rerr, err)
		}
		if rerr != nil && v != verdictLost { // the resolver's own failure (it said why lost itself)
			fmt.Fprintln(log, "migrate:", rerr)
		}
		return rep, err
	}
	if src.Side == api.SideFailed {
		// Its VM was stopped before the engine could resume it (its VMM's
		// shutdown, vmm sideAfter): the guest does not run there, and did
		// not after the pause, so a destination that holds the state may
		// hold its only copy; cleanup's plan leaves it, says what to run.
		rs.sawSourceStopped(ranBefore("migrate's run saw the source's migration end failed, its VM stopped before it could resume the guest"),
			migrationKey{id: rs.id})
		return cleanupFailed(rs, rep, fmt.Errorf("%s (the source's VM was stopped before it could be resumed: the guest does not run there)",
			withCause("migration "+string(rep.Status), rep.Error)))
	}
	// It resumed the guest, or never paused it.
	rs.sawSourceRun(ranBefore(fmt.Sprintf("migrate's run saw the source's migration end %s, the guest running there", rep.Status)),
		migrationKey{id: rs.id})
	return cleanupFailed(rs, rep, fmt.Errorf("%s (the source keeps running)", withCause("migration "+string(rep.Status), rep.Error)))
}

// withCause is what, then cause after a colon; what alone where cause
// is empty: a source's report may carry no error (a fake's; an
// embedder's engine's, which need not fill one in), and the reason
// then names no empty cause (until TestRunNoEmptyCause a cancelled
// run read "migration cancelled:  (the source keeps running)").
func withCause(what, cause string) string {
	if cause == "" {
		return what
	}
	return what + ": " + cause
}

// parenCause is cause in parentheses after a space, or nothing where
// it is empty (withCause).
func parenCause(cause string) string {
	if cause == "" {
		return ""
	}
	return " (" + cause + ")"
}

// cleanupFailed is the resolve after a failure or a cancel, err what
// the run fails with: the source runs (or never stopped), so a
// destination still waiting is cancelled and one left handover-unknown
// is discarded; after a migration whose source reported it failed or
// cancelled (conclude), or a migrate-incoming or migrate-send that
// failed (run). Where that resolve finds the source and the
// destination both running the guest, or saw it run on both (sawBoth),
// the report says so, as after a source that stopped answering:
// resolved both, and BOTH first in its error, err after it (bothSeen).
// Until TestBothRunResolvedSaysBoth's case of a failed migration whose
// source runs (and TestBothRanResolvedSaysBoth's of a guest seen
// running on both, also after a failed migrate-send), BOTH was on
// stderr only, as "cleaning up", and the report said failed, "the
// source keeps running", with no resolved. Any other failure of the
// resolve it only reports, as "cleaning up".
func cleanupFailed(rs *resolver, rep report, err error) (report, error) {
	v, rerr := rs.resolve()
	if sawBoth(v, rerr) {
		return bothSeen(rep, rerr, err)
	}
	if rerr != nil {
		fmt.Fprintln(rs.out, "migrate: cleaning up:", rerr)
	}
	return rep, err
}

// bothSeen is the report and the error of a run that fails with err
// and whose resolve ended with rerr, which found the guest running, or
// saw it run, on both sides of the migration (sawBoth): resolved both,
// and BOTH (rerr) first in the error, err after it.
func bothSeen(rep report, rerr, err error) (report, error) {
	rep.Resolved = resolvedBoth
	err = fmt.Errorf("%w (%w)", rerr, err)
	rep.Error = err.Error()
	return rep, err
}

// fromProgress fills in a report the source never gave (it stopped
// answering: its VMM exited or hangs) from its last progress, so the
// report says how far the migration got instead of zeros. Durations
// other than the total, the downtime and the hint counters stay unknown
// (zero).
func fromProgress(r *engine.Report, p engine.Progress) {
	r.Passes, r.BytesWire, r.TotalPages = p.Pass, p.BytesWire, p.TotalPages
	r.PagesSent, r.PagesZero, r.PagesSkipped = p.PagesSent, p.PagesZero, p.PagesSkipped
	r.TotalMS, r.Mode = p.Elapsed.Milliseconds(), p.Mode
	if r.TotalMS > 0 {
		r.ThroughputMB = float64(p.BytesWire) / 1e6 / (float64(r.TotalMS) / 1e3)
	}
}
