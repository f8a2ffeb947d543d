package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/job"
	"github.com/ferryvm/ferry/vmm/api"
)

// finishCompleted collects the destination's report and ends the source
// of migration id, whose guest now runs on the destination. A VMM at
// the source's socket that is not that migration's source (another
// migration, none, or not a sender in it: quitSource) is left alone,
// said on log when it names that migration, and is no failure; that
// migration's source running the guest beside the destination fails
// the run, saying BOTH run it (errBothRun), and neither is stopped;
// the report's resolved then says both.
// A VMM there that names that migration and has not said it handed the
// guest over (still migrating, or handover-unknown: sourceWaits) fails
// it too, with the command to run: nothing is quit or resumed.
//
// rec (nil: none) records the source's look and quit, after the resolve
// that found the guest on the destination (report.Resolve); a handover
// that completed needs no resolve, and its quit is recorded nowhere.
//
// Every failure keeps the report's status (the handover completed, or
// the resolve's, as it was) and sets its error to what migrate prints
// (failedWith), so that migrate -json says it, not only stderr
// and the exit code. What it cannot say: whether a source it could not
// ask (sideUnreachable) still waits; that is no failure, as before.
func finishCompleted(j *job.Job, rep report, id string, rec *resolveRecord, log io.Writer) (report, error) {
	dst, derr := waitDone(j.Destination.Control, id, 30*time.Second)
	if dst.Report != nil && derr == nil {
		rep.Destination = dst.Report
	}
	if derr == nil && dst.Side != api.SideRunning {
		derr = fmt.Errorf("its side is %s", dst.Side)
	}
	side, qerr := quitSource(j.Source.Control, id, "", log, rec) // the VM lives on the destination now
	var notSrc *errNotSource
	if errors.As(qerr, &notSrc) { // not this migration's source: left alone, as a VMM in another migration is
		fmt.Fprintf(log, "migrate: the guest runs on the destination; %v\n", qerr)
		qerr = nil
	} else if side == api.SideRunning && qerr == nil && derr == nil {
		// This migration's source runs the guest beside the
		// destination (quitSource): said, and neither is stopped.
		rep.Resolved = resolvedBoth
		return failedWith(rep, errBothRun(j.Source.Control, j.Destination.Control, resumedSince))
	}
	var notDst *errNotDestination
	switch {
	case errors.As(derr, &notDst): // its report is not the destination's: not printed
		return failedWith(rep, fmt.Errorf("the source handed over, but %w", derr))
	case derr != nil:
		return failedWith(rep, fmt.Errorf("the source handed over, but the destination %s does not confirm that it runs the guest%s: %w",
			j.Destination.Control, reportText(dst.Report), derr))
	}
	if qerr != nil { // quitSource printed why, and the VMM's migrate-status
		return failedWith(rep, fmt.Errorf("the guest runs on the destination, but the source was not quit: %w", qerr))
	}
	if sourceWaits(side) {
		return failedWith(rep, errSourceWaits(j, side))
	}
	// A completed report with an error: handed over, but the post-copy
	// page check failed (engine.ErrPostcopyCheck). A handover-unknown
	// resolved here keeps its own error, which is no failure.
	if rep.Status == engine.StatusCompleted && rep.Error != "" {
		return failedWith(rep, fmt.Errorf("the guest runs on the destination, but: %s", rep.Error))
	}
	return rep, nil
}

// failedWith is a run's failure err as its report says it (run applies
// it to every failure; finishCompleted's are its first users): the
// report's error becomes what migrate prints as its reason, and keeps
// the report's own error (the source's, the post-copy page check's, or
// the unknown handover's that the resolve settled or could not) where
// err does not say it already, appended to err, which migrate prints,
// too. The status is left as it was: after a handover no other says
// where the guest runs (docs/JOBS.md, "What a migration ends as"), and
// before one the source's is the engine's own.
func failedWith(rep report, err error) (report, error) {
	if rep.Error != "" && !strings.Contains(err.Error(), rep.Error) {
		err = fmt.Errorf("%w (the migration's own error: %s)", err, rep.Error)
	}
	rep.Error = err.Error()
	return rep, err
}

// reportText is what finishCompleted says of a destination's report r
// that it does not take: its status and error; "" for none.
func reportText(r *engine.Report) string {
	switch {
	case r == nil:
		return ""
	case r.Error == "":
		return fmt.Sprintf(" (its report: %s)", r.Status)
	}
	return fmt.Sprintf(" (its report: %s, %s)", r.Status, r.Error)
}

// sourceWaits reports whether side, what a migration's source says by
// quitSource's look beside a destination that runs the guest, leaves a
// paused copy that waits for a decision: still migrating (it has not
// heard how the handover ended; it may end handover-unknown) or
// handover-unknown. Such a source never resumes on its own beside a
// destination that got COMMIT (only an ABORT resumes it: engine
// sender.commit, recommit), nor does its VMM (vmm sideAfter,
// migrate-resolve alone moves it on); but nothing moves it either once
// migrate has ended. What it does not look at: the role of a VMM that
// says so (quitSource checks it only of a side it acts on or calls
// BOTH); one that is no sender in that migration is flagged all the
// same, and -resolve then says whose side it is not (rolesPair).
func sourceWaits(side api.Side) bool {
	return side == api.SideMigrating || side == api.SideUnknown
}

// errSourceWaits is finishCompleted's failure for a source at side
// (sourceWaits): nothing was quit or resumed, and the line to run names
// migrate -resolve, which waits for a source still migrating, tells a
// handover-unknown one migrated beside the running destination, and
// quits it (docs/HANDOVER.md). It is not told migrated here: the VMM
// refuses that while its migration runs, and a handover-unknown source
// met here was not seen so by the resolve that decided (it did not
// answer it); -resolve asks both sides afresh.
func errSourceWaits(j *job.Job, side api.Side) error {
	what := "it has not heard how the handover ended; it never resumes on its own, but may end handover-unknown, paused, " +
		"waiting for a decision"
	if side == api.SideUnknown {
		what = "it is paused, waiting for a decision"
	}
	return fmt.Errorf("the guest runs on the destination, but the source %s says %s in this migration (%s): it was not quit; "+
		"run: migrate -resolve -config %s", j.Source.Control, side, what, shellArg(j.File))
}
