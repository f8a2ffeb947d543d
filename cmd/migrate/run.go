package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"time"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/job"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/vmm/api"
	"github.com/ferryvm/ferry/vmm/control"
)

// One migration as migrate -config drives it (run): the destination
// told to listen, the source to send, a migration already sent followed
// instead, and the cleanup of a migrate-incoming or migrate-send that
// failed. Following the source is follow.go's, the outcome conclude.go's.

// run drives both VMMs through one migration; start is when migrate
// began: the source's SetupMS grows by the time until it was told to
// send (migrate's checks, the destination's start).
//
// An act it did not send to an older VMM (errNotSent: the resolver
// keeps the first, rs.undone; migrate printed why, and the VMM's
// migrate-status)
// makes run fail if nothing else did. Only a run whose guest runs on
// the destination succeeds otherwise, so the report's error then says
// it too (before, migrate -json printed a completed migration without
// an error beside exit 1: TestRunUndoneJSONSaysWhy).
//
// Whatever run fails with, the report's error is that reason, as
// migrate prints it, with the report's own error kept in it
// (failedWith): before TestRunJSONErrorIsReason, many failures kept the
// report's older error beside a reason of their own on stderr (a
// handover-unknown whose resolve ended manual said the handover's error
// alone, the guest placed nowhere; a failed migration, without "the
// source keeps running"), and a cancelled one said none.
func run(ctx context.Context, start time.Time, j *job.Job, p pluginSet, verify verifyMode, prog *progress, log io.Writer) (out report, err error) {
	rs := newResolver(j, log)
	defer func() {
		if err == nil && rs.undone != nil {
			err = rs.undone
		}
		if err != nil {
			out, err = failedWith(out, err)
			out.Exit = 1 // realMain's exit code for it
		}
		out.Resolve = rs.rec.seen()
	}()
	rep := report{Report: engine.Report{Status: engine.StatusFailed}}
	args := api.MigrateArgs{Plugin: p.transport, Transport: map[string]any(j.Transport.Config),
		MaxDowntimeMS: j.Limits.MaxDowntime.Milliseconds(), Bandwidth: j.Limits.Bandwidth, MaxPasses: j.Limits.MaxPasses,
		SwitchoverTimeoutMS: j.Limits.SwitchoverTimeout.Milliseconds(), IncomingTimeoutMS: j.Limits.IncomingTimeout.Milliseconds(),
		Postcopy: j.Limits.Postcopy, ReconnectTimeoutMS: j.Limits.ReconnectTimeout.Milliseconds(), StallTimeoutMS: j.Limits.StallTimeout.Milliseconds(),
		VerifyPages: verify != verifyOff, VerifyFree: verify == verifyStrict, Hints: hintArgs(j, p), ID: rand.Text()}
	srcCreds, dstCreds, err := credentials(j)
	if err != nil {
		rep.Error = err.Error()
		return rep, err
	}
	securityWarnings(log, j)
	call := func(sock, cmd string, a, res any) error {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		return callControl(cctx, sock, cmd, a, res)
	}
	rs.id = args.ID
	if st, ok := sending(j.Source.Control); ok {
		if st.ID == "" {
			// Started by hand, not by a migrate: nothing ties it to this
			// job, and acts naming no id (Ctrl-C's cancel, the quit at
			// its end) would reach whatever the source holds by then.
			err := fmt.Errorf("the source %s is already sending a migration that has no id (started by hand, not by migrate; "+
				"phase %s): this job started nothing and acts on none; wait for it to end, or cancel it by hand", j.Source.Control, st.Progress.Phase)
			rep.Error = err.Error()
			return rep, err
		}
		rs.id = st.ID // conclude checks that the job's destination reports the same
		// An earlier migrate of this job ended (killed, its terminal
		// gone) while the VMMs went on: follow that migration.
		fmt.Fprintf(log, "migrate: the source %s is already sending a migration (phase %s, mode %s); following it instead of starting another\n",
			j.Source.Control, st.Progress.Phase, cmp.Or(st.Progress.Mode, engine.ModePrecopy))
		src, err := follow(ctx, j.Source.Control, j.Destination.Control, rs.id, prog, j.Limits.SwitchoverTimeout+10*time.Second, log, rs.notSent)
		prog.finish()
		return conclude(j, rep, src, err, rs, log)
	}
	if err := call(j.Destination.Control, "migrate-incoming", withCredentials(args, dstCreds), nil); err != nil {
		rep.Error = err.Error()
		if control.NotSent(err) && sourceSettled(rs, j.Source.Control) {
			// Never written (no VMM at the socket, or one migrate will
			// not talk to): no VMM heard of this migration's id, and the
			// source was not asked and holds nothing awaiting a
			// decision. A resolve would only speak of a handover nobody
			// holds (before, it printed "cannot be resolved" and resume
			// lines for this id).
			next := ""
			if vmmGone(err) {
				next = "; start the destination VMM (ferry-vmm run -incoming) with -control at that path, or fix destination.control"
			}
			return rep, fmt.Errorf("destination %s: %w (nothing was started: the source was not asked%s)", j.Destination.Control, err, next)
		}
		// The call may have got through (Ctrl-C or migrate's call timeout
		// while the destination VMM still started its transport plugin):
		// that VMM took this migration and would wait incoming_timeout
		// for a source that is never told to send, refusing the next
		// migrate-incoming meanwhile. Cancel it.
		if st, serr := migrateStatus(j.Destination.Control); serr == nil && st.ID == args.ID {
			res, nerr := cancelMigration(j.Destination.Control, args.ID, st.Control, log)
			rs.notSent(nerr)
			if cancelledHere(ctx, j.Destination.Control, args.ID, res, true, j.Limits.SwitchoverTimeout+10*time.Second) {
				// The source was never asked, and the destination
				// recorded the cancel (or exited on it, as a cancelled
				// destination does): neither holds anything to resolve.
				rep.Status = engine.StatusCancelled
				return rep, fmt.Errorf("destination %s: %w", j.Destination.Control, err)
			}
		}
		return cleanupFailed(rs, rep, fmt.Errorf("destination %s: %w", j.Destination.Control, err))
	}
	rs.dstTook = true // the destination's side of this migration is the one at its socket
	told := time.Now()
	if err := call(j.Source.Control, "migrate-send", withCredentials(args, srcCreds), nil); err != nil {
		rep.Error = err.Error()
		st, serr := migrateStatus(j.Source.Control)
		if serr == nil && st.ID == args.ID { // the call got through after all
			res, nerr := cancelMigration(j.Source.Control, args.ID, st.Control, log)
			rs.notSent(nerr)
			if nerr != nil || res.Postcopy || res.Committing {
				// Too late (the engine held), or not asked (an older
				// VMM): it goes on to its end, the guest perhaps on the
				// destination; follow it, as after any refused cancel,
				// and leave the destination alone.
				why := res.Why
				if nerr != nil {
					why = "its VMM was not asked (above)"
				}
				fmt.Fprintf(log, "migrate: migrate-send failed (%v), but the source took it, and the cancel was refused or not sent: %s.\n"+
					"migrate: following it to the end (the VMMs finish the migration on their own).\n", err, why)
				src, err := follow(context.WithoutCancel(ctx), j.Source.Control, j.Destination.Control, args.ID, prog, 0, log, rs.notSent)
				prog.finish()
				return conclude(j, rep, src, err, rs, log)
			}
			if cancelledHere(ctx, j.Source.Control, args.ID, res, false, j.Limits.SwitchoverTimeout+10*time.Second) {
				rep.Status = engine.StatusCancelled
			}
		}
		// A call that was written may have got through before the source
		// died, and a destination that loaded the state may then hold
		// the only copy of the guest: beside a source that cannot be
		// asked, it is left to cleanup's plan (TestRunSendLostSourceGone).
		if control.NotSent(err) || answered(serr) {
			rs.notSent(cancelOurs(j.Destination.Control, args.ID, log))
		}
		return cleanupFailed(rs, rep, fmt.Errorf("source %s: %w", j.Source.Control, err))
	}
	src, err := follow(ctx, j.Source.Control, j.Destination.Control, args.ID, prog, j.Limits.SwitchoverTimeout+10*time.Second, log, rs.notSent)
	prog.finish()
	if src.Report != nil {
		src.Report.SetupMS += told.Sub(start).Milliseconds()
	}
	return conclude(j, rep, src, err, rs, log)
}

// sourceSettled reports whether the source at sock, asked once, holds
// nothing that a resolve could act on or must speak of: no VMM answers
// there (the request was not sent), or its VM runs its guest or never
// migrated. A source in any other side (handover-unknown, migrated,
// still migrating: an earlier migration's) is left to the cleanup,
// which names that migration; so is one that hangs.
func sourceSettled(rs *resolver, sock string) bool {
	s, err := rs.query(sock)
	if err != nil {
		return control.NotSent(err)
	}
	return s.Side == api.SideNone || s.Side == api.SideRunning
}

// cancelledHere reports whether the report of a migrate-send or
// migrate-incoming whose call failed says cancelled: the operator
// cancelled (ctx ended), the VMM at sock took the cancel (res), and it
// recorded migration id cancelled once it ended, which migrate waits
// for, at most grace. A cancel that takes may still end failed (the
// engine had failed a moment before: api.CancelResult), and that is what
// the VMM records; so does the report then. Before, migrate reported
// cancelled from the answer alone. A destination VMM (exits) ends once
// it recorded a cancelled migration (vmm: unopenedDone, migrationDone),
// perhaps before migrate reads the record: one that took the cancel and
// then is gone (its socket refuses or is removed: vmmGone) was
// cancelled; one that hangs is not taken for gone, and one that answers
// an error (as it exits) is asked again.
func cancelledHere(ctx context.Context, sock, id string, res api.CancelResult, exits bool, grace time.Duration) bool {
	if !res.Cancelled || ctx.Err() == nil {
		return false
	}
	tick := time.NewTicker(statusPoll)
	defer tick.Stop()
	for deadline := time.Now().Add(grace); time.Now().Before(deadline); <-tick.C {
		st, err := migrateStatus(sock)
		switch {
		case err == nil:
		case vmmGone(err):
			return exits
		case answered(err):
			continue
		default:
			return false
		}
		if st.ID != id {
			return false
		}
		if st.Done {
			return st.Report != nil && st.Report.Status == engine.StatusCancelled
		}
	}
	return false
}

// sending reports whether sock's VMM is sending a migration now (its
// migrate-status says so), with that status.
func sending(sock string) (api.Migration, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var st api.Migration
	if err := callControl(ctx, sock, "migrate-status", nil, &st); err != nil { // none has run, or unreachable
		return st, false
	}
	return st, st.Role == transport.RoleSend.String() && !st.Done
}
