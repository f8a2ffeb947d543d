package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/ferryvm/ferry/framework/job"
	"github.com/ferryvm/ferry/vmm/api"
	"github.com/ferryvm/ferry/vmm/control"
)

// migrate -resolve (resolveMain), and the end of a source once the guest
// runs on the destination (quitSource, also finishCompleted's), with
// what is said when both sides run the guest (errBothRun).

// parseJobFile reads and parses the job at path for a mode that starts
// no plugin (-resolve, -start-postcopy): nil, with every diagnostic and
// the line that ends every refusal on stderr (readJob, refuseJob, as a
// run's), when it cannot be read or has errors (exit 2). It checks no
// plugin: a job whose plugin blocks are wrong is still read.
func parseJobFile(path string, stderr io.Writer) *job.Job {
	j, sources, diags := readJob(path, stderr)
	if j == nil {
		return nil
	}
	if diags.HasErrors() {
		refuseJob(stderr, path, sources, diags)
		return nil
	}
	return j
}

// resolveMain is migrate -resolve: read the job, resolve, say the
// outcome; with asJSON also as one JSON object on stdout
// (resolveAnswer), the lines it prints there otherwise going to stderr.
// It returns the exit code. The first Ctrl-C or SIGTERM ends the
// resolve at its next look or wait (resolver.stop, errInterrupted:
// exit 1, with what it did and saw until then); the second ends
// migrate at once, with nothing more said.
func resolveMain(path string, asJSON bool, stdout, stderr io.Writer) int {
	return modeMain(asJSON, stdout, stderr, func(signalled context.Context, said io.Writer) (resolveAnswer, int) {
		a := resolveJob(signalled, path, said, stderr)
		return a, a.Exit
	})
}

// resolveJob is resolveMain's work: what it says goes to stdout, its
// reasons for exit 1 (each also in the answer's error) and the
// resolver's lines to stderr. signalled, done, ends the resolve
// (resolver.stop); once the resolve found the guest running on the
// destination, the source is quit all the same (quitSource).
func resolveJob(signalled context.Context, path string, stdout, stderr io.Writer) resolveAnswer {
	a := resolveAnswer{Mode: modeResolve}
	j, refusal := parseJobFileSaying(path, stderr)
	if j == nil {
		a.Outcome, a.Error, a.Exit = outcomeJobRefused, refusal, 2
		return a
	}
	r := newResolver(j, stderr)
	r.stop = signalled.Done()
	v, err := r.resolve()
	var why []string // the reasons for exit 1, as printed
	fail := func(reason string) {
		fmt.Fprintln(stderr, "migrate:", reason)
		why = append(why, reason)
	}
	switch {
	case err != nil:
		if sawBoth(v, err) {
			a.Resolved = resolvedBoth
		}
		fail(err.Error())
		return a.end(&r.rec, why, false)
	case v == verdictMoved:
		a.Resolved = resolvedDestination
		// The source of the migration the destination runs (r.dstID:
		// the pair's), not whatever answers at its socket by now.
		var notSrc *errNotSource
		var unnamed *errUnnamedRunning
		switch side, qerr := quitSource(j.Source.Control, r.dstID, r.dstTag, stderr, &r.rec); {
		case errors.As(qerr, &notSrc):
			fmt.Fprintf(stdout, "resolved: the guest runs on the destination; %v\n", qerr)
		case errors.As(qerr, &unnamed): // it may be this migration's source: not settled
			line := fmt.Sprintf("resolved: the guest runs on the destination; %v", qerr)
			fmt.Fprintln(stdout, line)
			why = append(why, line)
		case qerr != nil:
			fmt.Fprintf(stdout, "resolved: the guest runs on the destination; %s\n", r.sourceEnd(side, false))
			r.notSent(qerr)
		case side == api.SideMigrated, side == api.SidePostcopyBroken:
			fmt.Fprintf(stdout, "resolved: the guest runs on the destination; %s\n", r.sourceEnd(side, true))
		case side == api.SideRunning: // a sender in this migration (quitSource): resumed since the resolve's look
			a.Resolved = resolvedBoth
			fail(errBothRun(j.Source.Control, j.Destination.Control, resumedSince).Error())
			return a.end(&r.rec, why, false)
		case side == sideUnreachable:
			fmt.Fprintln(stdout, "resolved: the guest runs on the destination; the source's VMM does not answer")
		case side == api.SideNone:
			fmt.Fprintln(stdout, "resolved: the guest runs on the destination; the VMM at the source's socket holds no part "+
				"of this migration (none, or another), so it is not this job's source: left alone")
		case side == api.SideFailed: // its VM stopped before it could resume the guest, and its VMM exits: nothing waits there
			fmt.Fprintln(stdout, "resolved: the guest runs on the destination; the source says failed in this migration "+
				"(its VM was stopped before it could resume the guest: it holds no copy that runs or waits), so it is not quit")
		default: // it names this migration, but did not say it handed the guest over: it may wait, paused (sourceWaits)
			fmt.Fprintf(stdout, "resolved: the guest runs on the destination; the VMM at the source's socket says %s in this "+
				"migration, not that it handed the guest over, so it is not quit; to settle it, run again:\n    migrate -resolve -config %s\n",
				side, shellArg(path))
			fail(fmt.Sprintf("not done: the source %s says %s in this migration, not that it handed the guest over",
				j.Source.Control, side))
		}
	case v == verdictIdle:
		fmt.Fprintln(stdout, "nothing to resolve: no side of this job holds a paused copy of the guest waiting for a decision "+
			"(the source's VMM holds no migration, or its VM stopped before it could resume the guest; the destination holds none)")
	default:
		a.Resolved = resolvedSource
		fmt.Fprintln(stdout, "resolved: the guest runs on the source")
	}
	if r.undone != nil { // printed with why, and the VMM's migrate-status
		fail(fmt.Sprint("not done: ", r.undone))
	}
	return a.end(&r.rec, why, v == verdictIdle)
}

// resumedSince is how a source that quitSource finds running in the
// migration whose destination runs the guest came to: errBothRun's how.
const resumedSince = "the source says so since migrate's last look at it, in this migration: resumed by hand, perhaps"

// errBothRun is what migrate says, and exits 1 on, when the VMMs at
// the source's socket src and the destination's dst both report that
// they run the guest of one migration (how: how they came to, "" for
// plan's verdictBothRun): neither is stopped, since nothing here says
// which copy is the guest's newest; the operator must stop one.
func errBothRun(src, dst, how string) error {
	if how != "" {
		how = " (" + how + ")"
	}
	return fmt.Errorf("BOTH the source (%s) and the destination (%s) report that the guest runs%s: stop one of them now", src, dst, how)
}

// errBothRan is manual's error where the resolver saw the guest run on
// both sides of one migration (bothRanText; sourceRan and dstRan of
// seen.in), and resolve's where staleRun refuses a look for it: err,
// why the handover is unresolved, after BOTH, as
// errBothRun's, so that what migrate prints as its reason (-resolve's
// too) and a run's report (-json's error, resolved both: sawBoth) say
// it first. Until TestBothRanResolvedSaysBoth and
// TestResolveMainBothRanSaysBoth the reason was "handover unresolved"
// alone, and a run's report kept its own status and error with no
// resolved (failed: the guest on the source, docs/JOBS.md), BOTH's
// text on stderr only. What it does not say: that both run now (one
// side may be paused, handover-unknown), nor which copy is the newer.
type errBothRan struct {
	src, dst  string // the sockets
	migration string // the migration, as manual names it (migrationKey.text)
	err       error
}

func (e *errBothRan) Error() string {
	return fmt.Sprintf("BOTH the source (%s) and the destination (%s) ran the guest of migration %s after it began: "+
		"the two copies diverged, and migrate stopped neither; keep one copy and stop the other: %v", e.src, e.dst, e.migration, e.err)
}

func (e *errBothRan) Unwrap() error { return e.err }

// sawBoth reports whether a resolve that ended at verdict v with err
// found the source and the destination of its migration both running
// the guest at one look (plan's verdictBothRun: errBothRun), or saw it
// run on both, one look after another (manual's *errBothRan): a run's
// report then says resolved both, with BOTH first in its error.
func sawBoth(v verdict, err error) bool {
	var ran *errBothRan
	return v == verdictBothRun || errors.As(err, &ran)
}

// sourceEnd is what resolveMain says of the source, at side
// (quitSource's), once the guest runs on the destination: quit or not
// (an older VMM's: notSent), and told migrated where this resolve told
// it so, else what it said itself. Before, it was "told" either way.
func (r *resolver) sourceEnd(side api.Side, quit bool) string {
	switch {
	case r.toldMigrated && quit:
		return "the source was told and quit"
	case r.toldMigrated:
		return "the source was told, but not quit"
	case quit:
		return fmt.Sprintf("the source, which said %s, was quit", side)
	}
	return fmt.Sprintf("the source, which said %s, was not quit", side)
}

// quitSource ends the source VMM once the guest runs on the destination,
// if it says it handed the guest over (migrated, or postcopy-broken: its
// copy is stale) in migration id ("": any, a migration without one;
// migrate -resolve names the one its destination runs) whose tag
// fingerprint is tag ("": any; a source older than api.TagsReported
// reports none, and is taken as before), and returns the side it said.
// Any other VMM at that socket (one started anew there, with no
// migration or a guest of its own) is not this job's source and is left
// alone: quit would stop its guest. The quit names
// the migration the query found (actName: its id, or its tag
// fingerprint), so a VMM that holds another by then refuses it: that
// VMM holds no part of this migration either (none).
// A VMM that names that migration and says it handed the guest over in
// a role other than send (sourceSends: a receiver of it, whose copy may
// be the guest's newest, or a role this migrate does not know) is not
// quit either: quitSource returns that error (*errNotSource) with the
// side it said, and its caller says it was left alone. Every VMM
// reports its role, whatever its control version, so an older sender is
// treated as before.
// A VMM that names that migration and says it runs the guest is not
// quit: quitSource returns running, with sourceSends's error if it does
// not send in it. A sender that runs is that migration's source,
// resumed since the caller's look (by hand, say: a VMM resumes only a
// handover-unknown side), beside a destination that runs the guest
// too, and its callers say BOTH run and fail (errBothRun; until
// TestResolveMainSourceResumedBesideDestination, -resolve said the
// source was not quit and to resolve again, and exited 0). That holds
// only where the migration is named: without an id, and without a tag
// fingerprint to compare (the destination's VMM is older than
// api.TagsReported, or so is the source's), every migration matches,
// and a sender that runs may run a guest of its own; quitSource returns
// running with an *errUnnamedRunning then, and its caller says that
// nothing tells it apart (until
// TestResolveMainUnnamedRunningSourceNotBothRun, -resolve said BOTH
// run it and to stop one).
// A VMM that would ignore the id (idsIgnored) is not quit: quitSource
// says so on log, with its migrate-status (notSent), and returns that
// error (*errNotSent) with the side it said.
// rec (nil: none) records its look and the quit it sent (-resolve
// -json's source and steps).
func quitSource(sock, id, tag string, log io.Writer, rec *resolveRecord) (api.Side, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var res api.ResolveResult
	if err := callControl(ctx, sock, "migrate-resolve", api.ResolveArgs{Action: api.ResolveQuery}, &res); err != nil {
		rec.looked(true, api.ResolveResult{Side: sideUnreachable})
		return sideUnreachable, nil
	}
	rec.looked(true, res)
	if id != "" && res.ID != id || tag != "" && res.Control >= api.TagsReported && res.TagFingerprint != tag {
		return api.SideNone, nil // it holds no part of this migration
	}
	if res.Side == api.SideRunning { // not quit; the caller decides on its side only if it sends
		if err := sourceSends(sock, res); err != nil {
			return res.Side, err
		}
		if id == "" && (tag == "" || res.Control < api.TagsReported) {
			return res.Side, &errUnnamedRunning{sock: sock, res: res}
		}
		return res.Side, nil
	}
	if res.Side != api.SideMigrated && res.Side != api.SidePostcopyBroken {
		return res.Side, nil
	}
	if err := sourceSends(sock, res); err != nil {
		return res.Side, err
	}
	if err := idsIgnored(sock, res.Control); err != nil {
		return res.Side, notSent(log, sock, "quit", res.ID, res.Control, err)
	}
	// An answer lost as the VMM exits is a quit all the same.
	var refused *control.RemoteError
	n := actName(res.ID, res.TagFingerprint, res.Control)
	err := callControl(ctx, sock, "quit", n, nil)
	rec.sent(true, actionQuit, n, "", err)
	if errors.As(err, &refused) {
		return api.SideNone, nil
	}
	return res.Side, nil
}
