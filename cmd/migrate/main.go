// Command migrate runs a live migration described by a job file:
//
//	migrate -config job.hcl [-json] [-plugin-dir DIR] [-verify-pages[=strict]]
//	migrate -check -config job.hcl [-plugin-dir DIR]
//	migrate -resolve -config job.hcl
//	migrate -start-postcopy -config job.hcl
//
// It validates the job (HCL diagnostics with file:line:col), checks each
// plugin block against the schema its plugin reports and has the plugin
// check its values (hint.Validator, transport.Validator), tells the
// destination VMM to listen and the source VMM to send (through their
// control sockets), shows progress, and ends with a report. -check
// stops after the job's checks (what only opening the transport finds,
// an address that cannot be bound or reached, is found by the run:
// docs/JOBS.md).
//
// Ctrl-C or SIGTERM cancels in every phase but post-copy: the source
// keeps running and the destination is cancelled (it exits, also when
// it still started its transport plugin: vmm unopenedDone). In post-copy
// the guest runs on the destination with pages only the source holds, so
// the VMMs refuse the cancel and migrate says so and follows the migration
// to its end. A second signal ends migrate at once (the VMMs go on). If the handover ends unknown (docs/HANDOVER.md), migrate resolves
// it at once: it asks both VMMs and runs the guest on exactly one of them.
// -resolve does only that, for when an earlier migrate could not. A
// migrate run for a job whose source VMM is already sending (an earlier
// migrate ended early) follows that migration instead of starting one;
// one without an id (started by hand) it leaves alone and fails.
// -start-postcopy, run next to the migrate that drives the job, switches
// its migration to post-copy now (the source VMM's migrate-start-postcopy,
// like QEMU's) and prints what happened; only the job's own migration,
// the one its destination receives. Every act on a VMM's migration
// (cancel, resolve, switch, quit) names the migration's id (-resolve
// names two sides without one by their tag fingerprint, to a VMM of
// control version 3 or later: actName), so a VMM that
// moved on to another migration refuses it; a cancel or quit goes only
// to a VMM that reports a control version (api.ControlVersion) and so
// honours the id: an older one ignores it there, and migrate prints the
// command to run by hand instead and exits 1 (older.go). -start-postcopy
// never switches a migration without an id.
package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/job"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/vmm/api"
	"github.com/ferryvm/ferry/vmm/control"
)

func main() { os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr)) }

func realMain(args []string, stdout, stderr io.Writer) int {
	start := time.Now()
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "job file (HCL), e.g. configs/demo.hcl (required)")
	asJSON := fs.Bool("json", false, "print the report as one JSON object")
	var verify verifyMode
	fs.Var(&verify, "verify-pages", "test mode: compare a hash of every page on both sides before the destination runs, except pages\nhinted free (trusted); =strict compares those too (they must read as the zeros the destination holds)")
	pluginDir := fs.String("plugin-dir", "", "where plugins live, searched after the job's plugin_path (default: the job's plugin_dir, else plugins/ beside this binary)")
	resolveOnly := fs.Bool("resolve", false, "only resolve a handover left unknown: ask both VMMs, run the guest on exactly one")
	startPC := fs.Bool("start-postcopy", false, "only switch the job's running migration to post-copy now (run it next to the migrate driving the job)")
	checkOnly := fs.Bool("check", false, "only check the job: the file, the plugins it names and their blocks (each plugin asked for its schema and its own checks; what only opening the transport finds is not checked); touches no VMM")
	fs.Usage = func() {
		fmt.Fprintln(stderr, usage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return 0 // asked for: the usage is the answer
	} else if err != nil {
		return 2
	}
	if *cfgPath == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	if commands := countTrue(*resolveOnly, *startPC, *checkOnly); commands > 1 {
		fmt.Fprintln(stderr, "migrate: -resolve, -start-postcopy and -check are separate commands: give one\n"+usage)
		return 2
	}
	if *startPC {
		return startPostcopyMain(*cfgPath, stdout, stderr)
	}
	if *resolveOnly {
		return resolveMain(*cfgPath, stdout, stderr)
	}
	// Before the job's plugins start (loadJob asks them for their
	// schemas): a signal that came earlier would end migrate with them
	// still running, and with nothing said.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	context.AfterFunc(ctx, stop) // a second signal ends migrate at once
	j, plugins, code := loadJob(ctx, *cfgPath, *pluginDir, stderr)
	var rep report
	var err error
	switch {
	case j == nil && ctx.Err() == nil:
		return code
	case j == nil || ctx.Err() != nil:
		rep = report{Report: engine.Report{Status: engine.StatusCancelled}}
		err = errors.New("interrupted while checking the job: nothing was started, and neither VMM was asked anything")
		rep.Error = err.Error()
		if *checkOnly {
			fmt.Fprintln(stderr, "migrate:", err)
			return 1
		}
	case *checkOnly:
		printCheck(stdout, *cfgPath, j, plugins)
		return 0
	default:
		rep, err = run(ctx, start, j, plugins, verify, newProgress(stderr), stderr)
	}
	rep.WallMS = time.Since(start).Milliseconds()
	writeReport(stdout, rep, *asJSON)
	if err != nil {
		fmt.Fprintln(stderr, "migrate:", err)
		return 1
	}
	return 0
}

// writeReport prints rep as text, or with asJSON as one JSON object
// (migrate -json).
func writeReport(w io.Writer, rep report, asJSON bool) {
	if asJSON {
		json.NewEncoder(w).Encode(rep)
		return
	}
	printReport(w, rep)
}

const usage = "usage: migrate -config job.hcl [-json] [-plugin-dir DIR] [-verify-pages[=strict]]\n" +
	"       migrate -check -config job.hcl [-plugin-dir DIR]\n" +
	"       migrate -resolve -config job.hcl\n" +
	"       migrate -start-postcopy -config job.hcl"

// countTrue counts the flags set.
func countTrue(flags ...bool) int {
	n := 0
	for _, f := range flags {
		if f {
			n++
		}
	}
	return n
}

// printCheck says what a job that passed every check would run (migrate
// -check): the VMMs and the plugin binaries.
func printCheck(w io.Writer, path string, j *job.Job, ps pluginSet) {
	fmt.Fprintf(w, "%s: ok\n", path)
	fmt.Fprintf(w, "source        %s\n", j.Source.Control)
	fmt.Fprintf(w, "destination   %s\n", j.Destination.Control)
	fmt.Fprintf(w, "transport     %s (%s)\n", j.Transport.Name, ps.transport)
	for i, h := range j.Hints {
		fmt.Fprintf(w, "hint          %s (%s)\n", h.Name, ps.hints[i])
	}
}

// report is what migrate prints: the source's engine report plus what
// the destination saw, and how an unknown handover was resolved.
type report struct {
	engine.Report
	Destination *engine.Report `json:"destination,omitempty"`
	// Resolved says where the guest runs after a handover-unknown was
	// resolved, or after the source stopped answering: "destination" or
	// "source"; resolvedBoth where migrate found both sides of the
	// migration running it, or saw it run on both (sawBoth); empty if
	// nothing was resolved.
	Resolved string `json:"resolved,omitempty"`
	// WallMS is migrate's own run, from its start to this report: about
	// SetupMS + TotalMS plus the status polls (docs/JOBS.md).
	WallMS int64 `json:"wall_ms"`
}

// statusPoll is how often migrate asks a VMM for its migration's status:
// a report is seen at most this late.
const statusPoll = 20 * time.Millisecond

// callControl is one control call under ctx.
func callControl(ctx context.Context, sock, cmd string, args, res any) error {
	return control.Call(ctx, sock, cmd, args, res)
}

// cancelMigration asks sock to cancel migration id, which its last
// answer reported with control version control, and returns its answer
// (zero if it could not be asked; refused, because it holds another
// migration or cannot read the act, not cancelled with the VMM's
// refusal in Why); it is not cancelled by Ctrl-C, it is what Ctrl-C does. A
// VMM that does not honour the id (idsIgnored) is not asked: it says
// why on log, with the line to run by hand, and returns that as an
// error (*errNotSent).
func cancelMigration(sock, id string, control uint16, log io.Writer) (api.CancelResult, error) {
	return cancelNamed(sock, api.IDArgs{ID: id}, control, log)
}

// cancelNamed is cancelMigration for the migration n names: its id, or
// its tag fingerprint (migrate -resolve's id-less pairs, named).
func cancelNamed(sock string, n api.IDArgs, version uint16, log io.Writer) (api.CancelResult, error) {
	if err := idsIgnored(sock, version); err != nil {
		return api.CancelResult{}, notSent(log, sock, "migrate-cancel", n.ID, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var res api.CancelResult
	var refused *control.RemoteError
	if err := callControl(ctx, sock, "migrate-cancel", n, &res); errors.As(err, &refused) {
		res = api.CancelResult{Why: refused.Message}
	}
	return res, nil
}

// cancelOurs cancels sock's migration if it is the one migrate started
// (its migrate-status reports id): a VMM that refused migrate-send or
// migrate-incoming because it takes part in another migration keeps it.
// The cancel names id too, so a VMM that moved on to another migration
// after the look refuses it; a VMM from before migrate-cancel took an
// id, which would ignore it, is not asked (cancelMigration).
func cancelOurs(sock, id string, log io.Writer) error {
	if st, err := migrateStatus(sock); err == nil && st.ID == id {
		_, err := cancelMigration(sock, id, st.Control, log)
		return err
	}
	return nil
}

// vmmGone reports whether a control call found no VMM at the socket:
// nothing listens there any more, or the socket was removed (a VMM that
// exited). One that hangs is not gone.
func vmmGone(err error) bool {
	return control.NotSent(err) && (errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT))
}

// answered reports whether a control call's VMM answered, even if only
// to refuse (a control.RemoteError): it is there to be asked.
func answered(err error) bool {
	var re *control.RemoteError
	return err == nil || errors.As(err, &re)
}

// run drives both VMMs through one migration; start is when migrate
// began: the source's SetupMS grows by the time until it was told to
// send (migrate's checks, the destination's start).
//
// An act it did not send to an older VMM (errNotSent: the resolver
// keeps the first, rs.undone; migrate printed the line to run by hand)
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
		}
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
	if !j.Security.Encryption {
		fmt.Fprintln(log, plaintextWarning)
	}
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
			return finishCompleted(j, rep, rs.id, log)
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
	case engine.StatusCompleted:
		return finishCompleted(j, rep, rs.id, log)
	case engine.StatusHandoverUnknown:
		fmt.Fprintf(log, "migrate: handover unknown (%s); resolving\n", rep.Error)
		v, rerr := rs.resolve()
		rep.Resolved = map[verdict]string{verdictMoved: "destination", verdictSource: "source", verdictBothRun: resolvedBoth}[v]
		if v == verdictMoved {
			return finishCompleted(j, rep, rs.id, log)
		}
		if sawBoth(v, rerr) { // the report's error says BOTH, keeping the handover's own
			rep.Resolved = resolvedBoth
			return failedWith(rep, rerr)
		}
		if rerr != nil {
			return rep, rerr
		}
		return rep, fmt.Errorf("migration failed in the handover: %s (resolved: the guest runs on the source)", rep.Error)
	}
	if rep.Status == engine.StatusPostcopyBroken {
		// The destination decides: one whose post-copy completed (every
		// page there, though the source never heard it) runs the guest.
		// Otherwise nothing is cleaned up or resolved: no side may run
		// the guest again (the resolver says so).
		v, rerr := rs.resolve()
		if v == verdictMoved {
			fmt.Fprintf(log, "migrate: the source gave post-copy up (%s), but the destination holds every page and runs the guest\n", rep.Error)
			rep.Status, rep.Error, rep.Resolved = engine.StatusCompleted, "", "destination"
			return finishCompleted(j, rep, rs.id, log)
		}
		err := fmt.Errorf("migration %s: %s (the guest is lost; the source stays paused)", engine.StatusPostcopyBroken, rep.Error)
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
		return cleanupFailed(rs, rep, fmt.Errorf("migration %s: %s (the source's VM was stopped before it could be resumed: the guest does not run there)",
			rep.Status, rep.Error))
	}
	// It resumed the guest, or never paused it.
	rs.sawSourceRun(ranBefore(fmt.Sprintf("migrate's run saw the source's migration end %s, the guest running there", rep.Status)),
		migrationKey{id: rs.id})
	return cleanupFailed(rs, rep, fmt.Errorf("migration %s: %s (the source keeps running)", rep.Status, rep.Error))
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

// movedOn is follow's error when the VMM it follows reports another
// migration than the one followed: it ended that one and took another
// between two polls. The report of the one followed is gone with it.
type movedOn struct{ err error }

func (e movedOn) Error() string { return e.err.Error() }
func (e movedOn) Unwrap() error { return e.err }

// stoppedAnswering is follow's error when the VMM it follows stopped
// answering its control socket (it exited, or hangs).
type stoppedAnswering struct{ err error }

func (e stoppedAnswering) Error() string { return e.err.Error() }
func (e stoppedAnswering) Unwrap() error { return e.err }

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

// waitDone polls migrate-status of the destination's VMM at sock until
// migration id ("": any) is done, for at most d; unlike follow it never
// cancels anything. A VMM that reports another migration fails at
// once, and so does one that reports it in a role other than receive
// (statusReceives: not its destination).
func waitDone(sock, id string, d time.Duration) (api.Migration, error) {
	var st api.Migration
	for end := time.Now().Add(d); ; time.Sleep(statusPoll) {
		next, err := migrateStatus(sock)
		switch {
		case err != nil:
			return st, fmt.Errorf("%s: %w", sock, err)
		case id != "" && next.ID != id:
			return next, fmt.Errorf("%s reports another migration (id %q, not %q)", sock, next.ID, id)
		case statusReceives(sock, next) != nil:
			return next, statusReceives(sock, next)
		case next.Done:
			return next, nil
		case time.Now().After(end):
			return next, fmt.Errorf("%s: the migration is not done after %v", sock, d)
		}
		st = next
	}
}

// migrateStatus asks sock's VMM for its migrate-status. Each answer is
// decoded into a new value: JSON leaves a field the answer omits (an
// omitempty zero, as Progress.Reconnecting once a post-copy resumed)
// as it was, so reusing one would keep stale values.
func migrateStatus(sock string) (api.Migration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var st api.Migration
	err := callControl(ctx, sock, "migrate-status", nil, &st)
	return st, err
}

// follow polls migrate-status until migration id ("": whatever the VMM
// runs) is done; a VMM that reports another migration ends it with a
// movedOn error and the last status of migration id, and one that
// reports it in a role other than send (statusSends: not its source)
// with that *errNotSource, before any cancel. When ctx ends
// it cancels the migration (id: a VMM that holds another by then
// refuses) once and keeps following for at most grace
// (0: until done); a VMM that refuses the cancel because the migration
// is in post-copy is followed to the end, with a line on log saying so.
// While a post-copy reconnects, it asks the peer (the destination's
// control socket) now and then whether its VMM still answers
// (checkPeer).
//
// A VMM that does not honour the id in migrate-cancel (idsIgnored, from
// the last poll's answer) is not asked: follow says so on log with the
// line to run by hand, hands that error to undone (nil: dropped), and
// follows the migration to its end, as after a refused cancel.
func follow(ctx context.Context, sock, peer, id string, prog *progress, grace time.Duration, log io.Writer, undone func(error) error) (api.Migration, error) {
	var st api.Migration
	check := checkPeer{sock: peer}
	cancelled := false
	var deadline time.Time
	tick := time.NewTicker(statusPoll)
	defer tick.Stop()
	for {
		next, err := migrateStatus(sock)
		if err != nil {
			return st, stoppedAnswering{fmt.Errorf("%s: %w", sock, err)}
		}
		if id != "" && next.ID != id {
			// It ended migration id and took another between two polls:
			// that one's progress and report are not this one's, and
			// this one's end was not seen (conclude asks both sides).
			return st, movedOn{fmt.Errorf("%s moved on to another migration (id %q) before the end of migration %q was seen", sock, next.ID, id)}
		}
		if err := statusSends(sock, next); err != nil {
			// Not the source of migration id (a VMM that took that id in
			// another role): none of its progress, report or a cancel
			// (conclude asks both sides).
			return st, err
		}
		st = next
		if prog != nil {
			prog.update(st.Progress)
		}
		if st.Done {
			return st, nil
		}
		check.reconnecting(st.Progress.Reconnecting, prog, log)
		if ctx.Err() != nil && !cancelled {
			cancelled, deadline = true, time.Now().Add(grace)
			if prog != nil {
				prog.finish() // what follows stands on its own lines
			}
			res, nerr := cancelMigration(sock, id, st.Control, log)
			if nerr != nil && undone != nil {
				undone(nerr)
			}
			if nerr != nil || res.Postcopy || res.Committing {
				if nerr == nil {
					fmt.Fprintf(log, "migrate: %s: %s.\n", sock, res.Why)
				}
				fmt.Fprintln(log, "migrate: following it to the end; Ctrl-C again stops only this command (the VMMs finish the migration on their own).")
				grace = 0
			}
		}
		if cancelled && grace > 0 && time.Now().After(deadline) {
			return st, fmt.Errorf("%s: the migration did not stop within %v of the cancel", sock, grace)
		}
		done := ctx.Done()
		if cancelled {
			done = nil // cancelled once; now only the ticker paces the polls
		}
		select {
		case <-tick.C:
		case <-done:
		}
	}
}

// checkPeer tells the operator, once, when a post-copy has been
// reconnecting for a while and the destination VMM does not answer its
// control socket: it has most likely died, and the guest with it. The
// source cannot tell a dead destination from a cut network, so it keeps
// trying until reconnect_timeout; migrate can ask.
type checkPeer struct {
	sock   string // the destination's control socket; "" to never ask
	last   time.Time
	warned bool
}

// Asked after peerAfter of reconnecting, then at most every peerEvery.
const (
	peerAfter = 5 * time.Second
	peerEvery = 5 * time.Second
)

// reconnecting is called with the source's Progress.Reconnecting at every
// status poll.
func (c *checkPeer) reconnecting(d time.Duration, prog *progress, log io.Writer) {
	if c.sock == "" || c.warned || d < peerAfter || time.Since(c.last) < peerEvery {
		return
	}
	c.last = time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var st api.Migration
	err := callControl(ctx, c.sock, "migrate-status", nil, &st)
	if err == nil {
		return
	}
	c.warned = true
	if prog != nil {
		prog.finish()
	}
	fmt.Fprintf(log, "migrate: post-copy has been reconnecting for %v, and the destination VMM %s does not answer (%v).\n"+
		"migrate: if it is gone, the guest is lost with it. The source keeps its paused copy (never resumed) and keeps\n"+
		"migrate: trying until reconnect_timeout; if the destination VMM is only unreachable from here, the migration may still resume.\n",
		d.Round(time.Second), c.sock, err)
}

// resolvedBoth is report.Resolved where the source and the destination
// of one migration both say they run the guest (errBothRun), or the
// resolver saw the guest run on both, one look after another, so the
// two copies diverged (errBothRan: one may be paused by now): the error
// says BOTH, and neither was stopped. Before, such a report said
// destination, or nothing (TestBothRunResolvedSaysBoth,
// TestBothRanResolvedSaysBoth).
const resolvedBoth = "both"

func printReport(w io.Writer, r report) {
	fmt.Fprintf(w, "status        %s\n", r.Status)
	if r.Resolved == resolvedBoth {
		fmt.Fprintln(w, "resolved      the guest runs on both sides, or ran on both (BOTH: see the error)")
	} else if r.Resolved != "" {
		fmt.Fprintf(w, "resolved      the guest runs on the %s\n", r.Resolved)
	}
	if r.Error != "" {
		fmt.Fprintf(w, "error         %s\n", r.Error)
	}
	fmt.Fprintf(w, "setup         %d ms (plugins started and configured, before total)\n", r.SetupMS)
	fmt.Fprintf(w, "total         %d ms: connect %d, bulk %d, dirty passes %d, switch-over %d, teardown %d\n",
		r.TotalMS, r.ConnectMS, r.BulkMS, r.DirtyMS, r.SwitchoverMS, r.TeardownMS)
	fmt.Fprintf(w, "downtime      %d ms\n", r.DowntimeMS)
	fmt.Fprintf(w, "bytes on wire %d (%.1f MiB)\n", r.BytesWire, float64(r.BytesWire)/(1<<20))
	fmt.Fprintf(w, "pages         %d sent, %d zero, %d skipped of %d\n", r.PagesSent, r.PagesZero, r.PagesSkipped, r.TotalPages)
	for reason, n := range r.SkippedBy {
		fmt.Fprintf(w, "  skipped     %d by %s\n", n, reason)
	}
	fmt.Fprintf(w, "passes        %d\n", r.Passes)
	printPostcopy(w, r)
	if r.Encryption != "" {
		fmt.Fprintf(w, "encryption    %s\n", encryptionText(r.Encryption))
	}
	for _, h := range r.Hints {
		printHint(w, h)
	}
	if r.PagesChecked > 0 {
		trust := "trusted, not compared"
		if r.VerifyStrict {
			trust = "compared too (strict)"
		}
		fmt.Fprintf(w, "page check    %d pages equal; %d free at switch-over: %s\n", r.PagesChecked, r.PagesFree, trust)
	}
	fmt.Fprintf(w, "throughput    %.1f MB/s\n", r.ThroughputMB)
	if r.WallMS > 0 {
		fmt.Fprintf(w, "migrate       %d ms of wall time\n", r.WallMS)
	}
}

// pluginSet is where the job's plugins were found.
type pluginSet struct {
	dirs       []string          // the search path, absolute, in order
	transports map[string]string // every transport plugin found: name → path
	hintPaths  map[string]string // every hint provider found: name → path
	transport  string            // absolute path of the job's transport plugin
	hints      []string          // absolute paths of the job's hint providers, in job order
}
