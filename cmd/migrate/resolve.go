package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/job"
	"github.com/ferryvm/ferry/vmm/api"
)

// Resolving a handover (docs/HANDOVER.md): ask both sides, then move at
// most one of them to running. The destination is always moved first, and
// the source only after the destination confirmed; a side that cannot be
// asked is never guessed about.
//
// This file holds the resolver and the loop that drives its looks
// (resolve); the policy of one look and its steps are resolveplan.go's,
// the pairing of the two sides resolvepair.go's, what it remembers across
// looks resolveseen.go's, and what it says when it cannot decide
// resolvemanual.go's. migrate -resolve itself is resolvemain.go's.

// resolver asks and moves the two VMMs of one job.
type resolver struct {
	src, dst string // control sockets
	// id is the migration resolved (api.MigrateArgs.ID) when migrate
	// knows it: the one it started, or the one it follows; "" for
	// migrate -resolve (see pair).
	id      string
	jobFile string
	told    map[string]bool // sockets leftAlone spoke of
	// sourceRan: migrate saw the source run the guest after this
	// migration began (it reported "failed" and resumed, or a query
	// found it running), so a destination's copy is older than the
	// guest and must never run, whatever becomes of the source.
	sourceRan bool
	// dstRan: migrate saw the guest run on this migration's destination
	// (it said running, or the source said migrated or postcopy-broken:
	// RUNNING came, or post-copy ran the guest there), so the source's
	// copy is older than the guest and must never run again. manual,
	// doAll (staleStep) and resolve (staleRun) honour both flags, and
	// only at looks of the migration that set them (seen).
	dstRan bool
	// sourceStopped: the source said failed (vmm sideAfter): its VM was
	// stopped before the engine could resume it, so it did not run the
	// guest after the pause, and a handover-unknown destination holds
	// the current copy, perhaps the only one.
	sourceStopped bool
	// seen is the migration those three flags were seen in, and when
	// and how each was (resolveseen.go): a look of another ends the
	// resolve manual.
	seen memory
	// dstTook: the VMM at the destination's socket took part in the
	// migration resolved: it took migrate-incoming with r.id (run), or a
	// query found it reporting that migration. Without it, the source's
	// migration may have gone to another destination (another job's, or
	// an earlier VMM at that socket), and manual says so.
	dstTook bool
	// What the last query found (pair): srcOther, dstOther, a side that
	// reports another migration than r.id (nobody's partner here);
	// mismatch, two sides of two migrations (migrate -resolve); srcID and
	// dstID, the ids the sides report, which every step names (do);
	// srcTag and dstTag, their tag fingerprints, which tell two
	// migrations without an id apart, and which every act on such a
	// migration names (actName).
	srcOther, dstOther, mismatch bool
	// misreport: a side without a tag fingerprint stands where only a
	// HELLO leads (misreport): nothing names its migration.
	misreport bool
	// roles: a side names the migration resolved in the role its
	// socket's VMM does not take in it (rolesPair; two migrations told
	// apart by name are mismatch).
	roles          *errRoles
	srcID, dstID   string
	srcTag, dstTag string
	// saidOlder: pair printed, once, that it paired two id-less sides
	// by the absence of an id (a VMM older than api.TagsReported).
	saidOlder bool
	// toldMigrated: this resolve told the source migrated, and it
	// confirmed (do); a source that said migrated or postcopy-broken
	// itself was told nothing, and resolveMain says so.
	toldMigrated bool
	// dstControl is the control version the destination's last answer
	// reported (api.ControlVersion): a cancel or quit naming dstID goes
	// only to a VMM that honours it (idsIgnored), and names dstTag only
	// to one that honours that (actName). srcControl, the source's.
	dstControl, srcControl uint16
	// undone is the first act not sent to an older VMM, or to a
	// destination nothing names (errNotSent): migrate printed why and
	// that VMM's migrate-status, and fails with it.
	undone error
	wait   time.Duration // how long a side may stay "migrating"
	pcWait time.Duration // how long a destination may stay "migrating" beside a source whose post-copy broke
	out    io.Writer
	// lastSrc and lastDst are each side's answer to the last look, as
	// given (query; unreachable: side sideUnreachable): the other side
	// of a step answered in a wrong role (wrongRole).
	lastSrc, lastDst api.ResolveResult
	// rec is what this resolve sent and the sides' last answers
	// (query, do, cancelDst, lastCancel): migrate -resolve -json's.
	rec resolveRecord
	// stop, closed at migrate -resolve's first Ctrl-C or SIGTERM, ends
	// the resolve (errInterrupted); nil, never (a run's resolve, which
	// goes on to its end).
	stop <-chan struct{}
}

// errInterrupted is why a resolve that stop ended placed the guest on
// no side: a signal came before it acted on a look, or while it waited
// for a side still migrating. It never cuts an act, nor the acts of one
// look (a resolution half done is worse than one that takes its 10 s
// per call), nor a look: the next ends it, unless that look asks for no
// act and no wait (resolve). Until TestResolveJSONInterrupted the
// signal killed migrate -resolve wherever it was, -json's answer
// unprinted.
var errInterrupted = errors.New("interrupted (Ctrl-C or SIGTERM): migrate acted no further and stopped waiting")

// interrupted reports whether stop is closed.
func (r *resolver) interrupted() bool {
	select {
	case <-r.stop:
		return true
	default:
		return false
	}
}

// pause waits d, or until stop is closed.
func (r *resolver) pause(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.stop:
	}
}

// query asks one side; an error means unreachable.
func (r *resolver) query(sock string) (api.ResolveResult, error) {
	var res api.ResolveResult
	err := r.call(sock, api.ResolveArgs{Action: api.ResolveQuery}, &res)
	if err != nil {
		res.Side = sideUnreachable
	}
	if sock == r.src {
		r.lastSrc = res
	} else {
		r.lastDst = res
	}
	r.rec.looked(sock == r.src, res)
	return res, err
}

// call runs migrate-resolve on sock. It is not cancelled by Ctrl-C: a
// resolution half done is worse than one that takes its 10 s.
func (r *resolver) call(sock string, a api.ResolveArgs, res *api.ResolveResult) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return callControl(ctx, sock, "migrate-resolve", a, res)
}

// resolve asks both sides until it can decide, then carries the plan
// out. It returns the verdict reached and an error when the guest is not
// known to run on exactly one side.
//
// A cancel verdict's steps (a handover-unknown source's resume beside a
// failing destination) are carried out once, whatever the wait, and
// both sides asked again: the cancel goes only beside a source seen
// running. Asked again, a source that says handover-unknown after it
// confirmed its resume is not resumed again (manual), whatever the
// destination says by then (resumesSource: until
// TestResolveResumesSourceOnceBesideFailed, beside a destination failed
// since it was resumed again, verdict source), and a
// destination's VMM that holds another migration by then (-resolve: two
// migrations), or names the one resumed in a role not a destination's
// (rolesPair; said by leftAloneInRole), is left alone, the verdict
// source, but only while the VMM
// at the source's socket still sends in the migration resumed
// (sourceSends): one that receives in it, or reports a role this
// migrate does not know, is not the source resumed, and the pair's
// failure ends the resolve (manual). A failing destination
// beside a running source is cancelled until it is failed; once the
// wait has run out (also before the resume), it is sent the cancel once
// more, and the verdict is source: it never runs the guest. A cancel
// its VMM does not apply and says why (cancelDst) is not sent again in
// this resolve while the destination stands as it did (refusals: its
// side and migration): it plans from the next answers, leaves a failing
// destination at once (it never runs the guest), and where it ends
// beside a destination still migrating, it says that reason. A refusal
// speaks of the destination as it stood: one that moved on since (from
// acting on COMMIT to failing, say) is sent the cancel afresh, and
// what migrate says is that cancel's answer (TestResolveRefusalNotStale;
// before, the first refusal was said of a failing destination that had
// not been asked, "COMMIT arrived: the guest runs here").
func (r *resolver) resolve() (verdict, error) {
	r.rec.ran = true
	deadline, pcDeadline := time.Now().Add(r.wait), time.Now().Add(r.pcWait)
	var said string
	// What the destination's VMM said when it did not apply a cancel
	// (cancelDst), by the look it was sent on (refusals).
	refusals := map[dstLook]string{}
	pcWaiting := false
	// A cancel verdict's steps were done, for the source's migration
	// resumedID (resumedTag, its tag fingerprint).
	resumed, resumedID, resumedTag := false, "", ""
	for {
		s, serr := r.query(r.src)
		d, derr := r.query(r.dst)
		if err := r.pair(&s, &d); err != nil {
			if resumed && s.Side == api.SideRunning && s.ID == resumedID && s.TagFingerprint == resumedTag &&
				sourceSends(r.src, s) == nil {
				if r.roles != nil { // it names the migration resumed, in a role not a destination's
					r.leftAloneInRole(r.dst, d)
				} else {
					r.leftAlone(r.dst, d)
				}
				return verdictSource, nil
			}
			fmt.Fprintf(r.out, "migrate: resolving: source %s, destination %s\n", s.Side, d.Side)
			return verdictManual, r.manual(s.Side, d.Side, err)
		}
		if err := r.remember(s, d); err != nil { // the flags, of this look's migration only
			fmt.Fprintf(r.out, "migrate: resolving: source %s, destination %s\n", s.Side, d.Side)
			return verdictManual, r.manual(s.Side, d.Side, err)
		}
		d.Side = dstSide(d)
		look := dstLook{side: d.Side, id: r.dstID, tag: r.dstTag}
		refused := refusals[look] // "": none for the destination as it stands now
		steps, v := plan(s.Side, d.Side)
		if v == verdictWait && s.Side == api.SidePostcopyBroken && !r.interrupted() { // interrupted: ends below
			if time.Now().Before(pcDeadline) {
				if !pcWaiting {
					fmt.Fprintf(r.out, "migrate: the source gave post-copy up; the destination is still in it "+
						"(it may hold every page and go on, or break): waiting up to %v for it\n", r.pcWait)
					pcWaiting = true
				}
				r.pause(500 * time.Millisecond)
				continue
			}
			v = verdictLost
		}
		if now := fmt.Sprintf("source %s, destination %s", s.Side, d.Side); now != said {
			fmt.Fprintf(r.out, "migrate: resolving: %s\n", now)
			said = now
		}
		if len(steps) == 0 {
			if err := staleRun(s.Side, d.Side, r.sourceRan, r.dstRan); err != nil {
				if r.sourceRan && r.dstRan {
					// The guest ran on both sides of this look's migration
					// (remember set the flag of the side that runs): said
					// as manual's both-ran is, BOTH first (sawBoth;
					// TestStaleRunResolvedSaysBoth).
					return verdictManual, &errBothRan{src: r.src, dst: r.dst, migration: r.seen.in.text(), err: err}
				}
				return verdictManual, err
			}
		}
		switch {
		case resumed && resumesSource(steps): // beside a failing destination, or one failed since (TestResolveResumesSourceOnceBesideFailed)
			return verdictManual, r.manual(s.Side, d.Side, fmt.Errorf("the source %s confirmed its resume (migration %s), then said %s (migration %s): "+
				"it is not resumed twice", r.src, idText(resumedID), s.Side, idText(r.srcID)))
		case r.interrupted() && (len(steps) > 0 || v == verdictWait):
			// Nothing more is sent, and no wait goes on (a cancel
			// verdict's, below).
			return verdictManual, r.manual(s.Side, d.Side, errInterrupted)
		case v == verdictCancelDst && len(steps) > 0:
			// The steps first (the source's resume, confirmed), then
			// ask again: the cancel goes only beside a source seen
			// running.
			if err := r.doAll(steps); err != nil {
				return verdictManual, r.manual(s.Side, d.Side, err)
			}
			resumed, resumedID, resumedTag = true, r.srcID, r.srcTag
			continue
		case v == verdictCancelDst && r.unnamedDst():
			// Nothing names its migration, and it holds no copy of
			// this guest: not cancelled, and kept as not done
			// (TestResolveLeavesUnnamedDestination).
			r.leaveUnnamed(d.Side)
			return verdictSource, nil
		case v == verdictCancelDst && idsIgnored(r.dst, r.dstControl) != nil:
			// An older VMM would cancel whatever it holds by the time
			// the cancel arrives: not asked (notSent says what to run).
			// A failing one never runs the guest: it runs on the source
			// (resumed by the steps, or running), and the cancel would
			// only have ended the linger.
			err := r.notSent(notSent(r.out, r.dst, "migrate-cancel", r.dstID, r.dstControl, idsIgnored(r.dst, r.dstControl)))
			if d.Side == sideFailing {
				return verdictSource, nil
			}
			return verdictManual, r.manual(s.Side, d.Side, err)
		case v == verdictCancelDst && refused == "" && time.Now().Before(deadline) && !r.interrupted():
			if why := r.cancelDst(); why != "" {
				refusals[look] = why
				continue // not sent again while it stands so: plan from fresh answers
			}
			r.pause(200 * time.Millisecond)
			continue
		case v == verdictCancelDst && d.Side == sideFailing && (refused != "" || !time.Now().Before(deadline) || r.interrupted()):
			// It refused its cancel, or the wait is past (it may have
			// run out before the source's resume): the guest runs on
			// the source, never on a failing destination, which is
			// sent its cancel once more unless it refused one.
			r.lastCancel(refused)
			return verdictSource, nil
		case v == verdictCancelDst && r.interrupted():
			// Beside a running source, a destination still migrating
			// (not failing) is not cancelled, nor waited for.
			return verdictManual, r.manual(s.Side, d.Side, errInterrupted)
		case (v == verdictWait || v == verdictCancelDst) && time.Now().Before(deadline):
			r.pause(200 * time.Millisecond)
			continue
		case v == verdictCancelDst && refused != "":
			return verdictManual, r.manual(s.Side, d.Side, fmt.Errorf("the destination still migrates after %v: it did not cancel migration %s "+
				"(its VMM: %s)", r.wait, migrationText(r.dstID, r.dstTag), refused))
		case v == verdictWait || v == verdictCancelDst:
			return verdictManual, r.manual(s.Side, d.Side, fmt.Errorf("a side is still migrating after %v", r.wait))
		case v == verdictIdle && serr != nil:
			return v, fmt.Errorf("source %s: %w; the destination holds no guest (%s)", r.src, serr, d.Side)
		case v == verdictIdle:
			return v, nil
		case v == verdictLost:
			// The quit names this migration even where the source's
			// socket reports none (r.srcID ""): a VMM there that holds
			// no part of it refuses the line. Without an id it names the
			// fingerprint the source reported (printedName), so that a
			// VMM started anew there by the time the line is run refuses
			// it too (TestResolvePostcopyBrokenQuitNamesTag); a quit that
			// VMM would not check is not printed (mayPrint).
			fmt.Fprint(r.out, postcopyBrokenText(brokenSides{src: r.src, dst: r.dst,
				srcName: r.printedName(r.src, cmp.Or(r.id, r.srcID, r.dstID)), dstName: r.printedName(r.dst, cmp.Or(r.id, r.dstID, r.srcID)),
				srcControl: r.srcControl, dstControl: r.dstControl, srcAnswered: s.Side != sideUnreachable,
				srcHolds: s.Side != api.SideNone, dstStays: d.Side == api.SidePostcopyBroken, jobFile: r.jobFile}))
			return v, fmt.Errorf("post-copy broke (source %s, destination %s): nothing to resolve, the guest is lost", s.Side, d.Side)
		case v == verdictManual:
			return v, r.manual(s.Side, d.Side, firstErr(derr, serr))
		case v == verdictBothRun:
			return v, errBothRun(r.src, r.dst, "")
		}
		if err := r.doAll(steps); err != nil {
			return verdictManual, r.manual(s.Side, d.Side, err)
		}
		return v, nil
	}
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return fmt.Errorf("no side to run the guest")
}

func newResolver(j *job.Job, out io.Writer) *resolver {
	return &resolver{src: j.Source.Control, dst: j.Destination.Control, jobFile: j.File,
		wait: j.Limits.SwitchoverTimeout + 10*time.Second, out: out, pcWait: postcopyWait(j.Limits)}
}

// postcopyWait is resolver.pcWait: the destination's own
// reconnect_timeout, stall_timeout plus 30 s for a stalled plugin to be
// noticed and restarted, then engine.TellBound: as long as a
// destination whose post-copy ended may stay reported as migrating
// while it tells the source how (its last word's send, the wait for the
// answer, and the listen for a source that comes back: about 6 minutes
// by default since the SETTLED and BROKEN lingers cover the source's
// doubled answer wait; a migrate-cancel on that destination ends it).
// It uses the engine's own defaults and its raised stall timeout at a
// bandwidth cap (engine.Options.defaults). A destination whose source
// keeps reconnecting without answering can read as migrating longer
// (TellBound's doc).
func postcopyWait(l job.Limits) time.Duration {
	o := engine.Options{ReconnectTimeout: l.ReconnectTimeout, StallTimeout: l.StallTimeout,
		SwitchoverTimeout: l.SwitchoverTimeout, Bandwidth: l.Bandwidth}
	return cmp.Or(l.ReconnectTimeout, engine.DefaultReconnectTimeout) + cmp.Or(l.StallTimeout, engine.DefaultStallTimeout) +
		30*time.Second + engine.TellBound(o)
}

// notSent keeps err, an act not sent to an older VMM (nil: none), if
// it is the first, and returns it.
func (r *resolver) notSent(err error) error {
	if r.undone == nil {
		r.undone = err
	}
	return err
}
