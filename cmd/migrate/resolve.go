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
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/vmm/api"
	"github.com/ferryvm/ferry/vmm/control"
)

// Resolving a handover (docs/HANDOVER.md): ask both sides, then move at
// most one of them to running. The destination is always moved first, and
// the source only after the destination confirmed; a side that cannot be
// asked is never guessed about.

// sideUnreachable stands for a VMM whose control socket did not answer.
const sideUnreachable api.Side = "unreachable"

// sideFailing stands for a destination whose migration still runs but
// whose handover is failed (dstSide): it will never run the guest. It
// still tells its source so (a post-copy destination that never got
// COMMIT answers the source's RESUME with ABORT and lingers for
// minutes, engine pcRecv.tellAborted), then fails; meanwhile its VMM
// refuses migrate-incoming. The engine moves a destination to failed
// only before it could run the VM, and never away from it (engine
// receiver.fail), so plan cancels it once the source runs: the cancel
// ends the linger at once.
const sideFailing api.Side = "failing"

// dstSide is the side plan sees for the destination's answer d:
// sideFailing for a migration that still runs with its handover failed,
// else d.Side. An older VMM, whose engine reports the handover only
// when the migration ends, says migrating: plan waits for it.
func dstSide(d api.ResolveResult) api.Side {
	if d.Side == api.SideMigrating && d.Role == transport.RoleReceive.String() && d.Handover == engine.HandoverFailed {
		return sideFailing
	}
	return d.Side
}

// step is one migrate-resolve call (or actionQuit) on the source (src)
// or the destination.
type step struct {
	src    bool
	action string
}

// actionQuit ends a discarded destination's VMM (the control command quit).
const actionQuit = "quit"

// verdict is what a plan leads to.
type verdict int

const (
	verdictWait      verdict = iota + 1 // a side is still migrating: ask again shortly
	verdictSource                       // the guest runs (or will run) on the source
	verdictMoved                        // the guest runs on the destination
	verdictManual                       // not decidable from here: nothing is resumed
	verdictBothRun                      // both sides report running: a bug, said loudly
	verdictCancelDst                    // the destination still waits beside a running source: cancel it (after the steps, which resume the source), then ask again
	verdictIdle                         // the source runs no copy (cannot be asked, holds none, or failed), and the destination holds none
	verdictLost                         // post-copy broke: no side may run the guest again
)

// plan decides from both sides what to do. It is the whole policy for
// one look, and a pure function (TestPlan covers every pair). The two
// sides are those of one migration: pair sees to it before (by id, and
// without ids by tag fingerprint). What it cannot know: what earlier
// looks saw (resolver.sourceRan, dstRan); doAll refuses a plan whose
// steps contradict that (staleStep), and resolve one without steps
// whose running side it calls older (staleRun).
func plan(src, dst api.Side) ([]step, verdict) {
	switch {
	case dst == api.SidePostcopyBroken:
		return nil, verdictLost
	case src == api.SidePostcopyBroken && dst == api.SideRunning:
		// The destination's post-copy completed: every page arrived
		// there (its SETTLED was lost with the connection, or the source
		// gave up while the last pages were landing).
		return nil, verdictMoved
	case src == api.SidePostcopyBroken && dst == api.SideMigrating:
		// Still in post-copy there: it may hold every page and complete
		// when its own reconnect gives up (resolver.pcWait), or break.
		return nil, verdictWait
	case src == api.SidePostcopyBroken:
		return nil, verdictLost
	case src == api.SideMigrating:
		return nil, verdictWait
	case src == api.SideUnknown:
		switch dst {
		case api.SideRunning:
			return []step{{true, api.ResolveMigrated}}, verdictMoved
		case api.SideUnknown:
			return []step{{false, api.ResolveDiscard}, {true, api.ResolveResume}, {false, actionQuit}}, verdictSource
		case api.SideDiscarded:
			return []step{{true, api.ResolveResume}, {false, actionQuit}}, verdictSource
		case api.SideFailed:
			return []step{{true, api.ResolveResume}}, verdictSource
		case sideFailing:
			// The source first; asked again, it is running, and the
			// failing destination is cancelled (below).
			return []step{{true, api.ResolveResume}}, verdictCancelDst
		case api.SideMigrating:
			return nil, verdictWait
		}
		return nil, verdictManual
	case src == api.SideRunning:
		switch dst {
		case api.SideUnknown:
			return []step{{false, api.ResolveDiscard}, {false, actionQuit}}, verdictSource
		case api.SideDiscarded:
			return []step{{false, actionQuit}}, verdictSource
		case api.SideMigrating, sideFailing:
			// A failing one too: the cancel ends its linger at once.
			return nil, verdictCancelDst
		case api.SideRunning:
			return nil, verdictBothRun
		}
		return nil, verdictSource
	case src == api.SideMigrated:
		switch dst {
		case api.SideUnknown:
			return []step{{false, api.ResolveResume}}, verdictMoved
		case api.SideRunning:
			return nil, verdictMoved
		}
		return nil, verdictManual
	}
	// The source cannot be asked, or has no migration (a VMM started
	// anew at the same socket holds no copy of this guest), or failed
	// (its VM was stopped before it could be resumed: it runs no copy,
	// and its VMM exits): whether the guest lives there is unknown, so
	// the destination must not be moved either. Not even cancelled: one that loaded the state and waits
	// for COMMIT may hold the only complete copy of a guest whose source
	// died, and a cancel after LOADED makes it give the guest up (ABORT,
	// failed). It ends handover-unknown on its own (switchover_timeout),
	// and one that had not loaded it fails on its own.
	// A destination that cannot be asked may hold it too (loaded,
	// handover-unknown): manual says how to run it once it answers.
	// A failing one holds no copy that may run: idle, as failed.
	switch dst {
	case api.SideRunning:
		return nil, verdictMoved
	case api.SideUnknown, sideUnreachable:
		return nil, verdictManual
	case api.SideMigrating:
		return nil, verdictWait
	}
	return nil, verdictIdle
}

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
	// destination nothing names (errNotSent): migrate printed the line
	// to run by hand, and fails with it.
	undone error
	wait   time.Duration // how long a side may stay "migrating"
	pcWait time.Duration // how long a destination may stay "migrating" beside a source whose post-copy broke
	out    io.Writer
}

// query asks one side; an error means unreachable.
func (r *resolver) query(sock string) (api.ResolveResult, error) {
	var res api.ResolveResult
	err := r.call(sock, api.ResolveArgs{Action: api.ResolveQuery}, &res)
	if err != nil {
		res.Side = sideUnreachable
	}
	return res, err
}

// call runs migrate-resolve on sock. It is not cancelled by Ctrl-C: a
// resolution half done is worse than one that takes its 10 s.
func (r *resolver) call(sock string, a api.ResolveArgs, res *api.ResolveResult) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return callControl(ctx, sock, "migrate-resolve", a, res)
}

// pair makes sure plan sees the two sides of one migration only: a VMM
// at one of the job's sockets may have taken part in another (started
// anew there, or the source followed was sending elsewhere), and
// deciding one side on what it says could run a guest twice or leave it
// nowhere. With r.id, a side that reports another migration holds no
// part of this one: it counts as none. Without (migrate -resolve), two
// sides that both report a migration must report the same id, and two
// that report no id the same tag fingerprint (tagsPair). Either way a
// side that reports the migration resolved must take its socket's role
// in it, a sender at the source's socket and a receiver at the
// destination's (rolesPair), also beside a VMM in none (without an id,
// not a receiver at the source's socket that runs the guest beside a
// destination that answers with none: sourceArrivedBesideNone). Else
// pair fails and nothing may be moved.
//
// It also records what manual must know of the pairing: which side
// reports another migration, whether the two take part in two
// (mismatch) or in the wrong roles (roles), and whether the destination
// was seen in this one (dstTook).
func (r *resolver) pair(s, d *api.ResolveResult) error {
	r.srcID, r.dstID, r.dstControl, r.srcControl = s.ID, d.ID, d.Control, s.Control
	r.srcTag, r.dstTag = s.TagFingerprint, d.TagFingerprint
	r.srcOther, r.dstOther, r.mismatch, r.misreport, r.roles = false, false, false, false, nil
	if r.id != "" {
		for i, x := range []*api.ResolveResult{s, d} {
			if x.Role != "" && x.ID != r.id {
				r.leftAlone([]string{r.src, r.dst}[i], *x)
				x.Side = api.SideNone
				r.srcOther, r.dstOther = r.srcOther || i == 0, r.dstOther || i == 1
			}
		}
		if err := r.rolesPair(*s, *d); err != nil {
			return err
		}
		r.dstTook = r.dstTook || d.Role != "" && d.ID == r.id
		return nil
	}
	if s.Role != "" && d.Role != "" && s.ID != d.ID {
		r.mismatch = true
		return fmt.Errorf("the two VMMs report different migrations (source id %q, destination id %q): "+
			"neither is the other's partner, so neither side is moved", s.ID, d.ID)
	}
	if err := r.rolesPair(*s, *d); err != nil {
		return err
	}
	if s.Role != "" && d.Role != "" && s.ID == "" {
		older, err := tagsPair(*s, *d)
		if err != nil {
			var mis *errMisreport
			r.misreport = errors.As(err, &mis)
			r.mismatch = !r.misreport
			return err
		}
		if older && !r.saidOlder {
			r.saidOlder = true
			fmt.Fprintf(r.out, "migrate: paired by the absence of an id: a VMM older than control version %d "+
				"cannot tell two hand-started migrations apart\n", api.TagsReported)
		}
	}
	r.dstTook = r.dstTook || s.Role != "" && d.Role != ""
	return nil
}

// tagsPair says whether s and d, a source and a destination that both
// report a migration without an id (started by hand on the control
// sockets), are the two sides of one: nil when they report the same tag
// fingerprint, which the source's HELLO carried to the destination that
// took it (engine fingerprint.go), else an error, and nothing may be
// moved. A VMM started anew at one of the job's sockets that ran an
// id-less migration of its own (running, failed, or still telling its
// source it failed) reports another, or none where the other side
// reports one: until control version 2 plan took it for the partner,
// and marked a handover-unknown source migrated beside a stranger's
// running guest, or resumed it on a stranger's failure.
//
// Equal fingerprints pair, also two empty ones: neither side sent or
// took a HELLO, so neither holds a copy that came from or went to the
// other, plan moves no such source (it runs, failed, or still
// migrates), and resolve cancels no such destination (unnamedDst). A
// side that reports none where only a HELLO leads misreports
// (misreport), and is paired with nothing.
// Beside a source still migrating, a side without one pairs too while
// the destination migrates or failed, and plan waits for that
// source: the destination's, because the source's HELLO may be on its
// way; the source's, because its VMM reports the fingerprint only from
// the source's first progress after HELLO (its bulk phase's, once READY
// came and the dirty log started) while the destination reports it from
// the HELLO it took, and the two answers are not taken at one instant
// (TestResolveWaitsForSourceFingerprint). A destination that ran the
// guest, or loaded it, is past that source's bulk phase: beside a source
// without a fingerprint it is another migration's, and is not paired
// (resolve would take its running for this migration's, dstRan).
// older is true, and the pair stands as before, when
// either VMM is older than api.TagsReported: it reports no fingerprint,
// and two hand-started migrations cannot be told apart (the caller says
// so); but not when the other side, from a VMM that reports
// fingerprints, reports none where the older side stands past a HELLO
// (helloless). What it cannot tell: a VMM may report any fingerprint; it
// keeps honest migrations apart, like the id.
func tagsPair(s, d api.ResolveResult) (older bool, err error) {
	switch {
	case s.Control < api.TagsReported || d.Control < api.TagsReported:
		return true, helloless(s, d)
	case !tagText(s.TagFingerprint) || !tagText(d.TagFingerprint):
		return false, fmt.Errorf("a VMM reports a malformed tag fingerprint (source %.20q, destination %.20q): "+
			"neither side is moved", s.TagFingerprint, d.TagFingerprint) // at most 20 runes of each, quoted
	case misreport(s, d) != nil:
		return false, misreport(s, d)
	case s.TagFingerprint == d.TagFingerprint:
		return false, nil
	case s.Side == api.SideMigrating && (s.TagFingerprint == "" || d.TagFingerprint == "") &&
		(d.Side == api.SideMigrating || d.Side == api.SideFailed):
		return false, nil
	}
	return false, fmt.Errorf("the two VMMs report different migrations, both without an id (source %s, destination %s): "+
		"neither is the other's partner, so neither side is moved", tagPrint(s.TagFingerprint), tagPrint(d.TagFingerprint))
}

// helloless is tagsPair's check of two sides of which one VMM is older
// than api.TagsReported (it reports no fingerprint, whatever it did):
// an error when the other, from a VMM that reports fingerprints, reports
// none, so it sent or took no HELLO (a source sets its fingerprint
// before HELLO goes out; a destination as it takes one), while the
// older side stands where only a HELLO leads. A source handover-unknown,
// migrated or post-copy-broken sent one and got as far as COMMIT or
// post-copy: its destination took it and reports it. A destination
// handover-unknown, discarded, running or post-copy-broken took one and
// loaded the state: its source was past its bulk phase and reports it,
// even while it still migrates. So the newer side is not the older
// one's partner, and plan must not decide on it: it would resume a
// handover-unknown source beside a stranger's failure (its real
// destination may run the guest), or discard a handover-unknown
// destination (perhaps the only copy of a guest whose source is
// elsewhere) beside a stranger's running source
// (TestResolveOlderBesideHelloless). Before, the two were paired by the
// absence of an id. Two older sides cannot be told apart, and stand
// paired as before.
func helloless(s, d api.ResolveResult) error {
	switch {
	case d.Control >= api.TagsReported && d.TagFingerprint == "" && srcPastHello[s.Side]:
		return fmt.Errorf("the destination reports no tag fingerprint (it took no HELLO), and the source, older than "+
			"control version %d, is %s, where only a HELLO leads: neither is the other's partner, so neither side is moved",
			api.TagsReported, s.Side)
	case s.Control >= api.TagsReported && s.TagFingerprint == "" && dstPastHello[d.Side]:
		return fmt.Errorf("the source reports no tag fingerprint (it sent no HELLO), and the destination, older than "+
			"control version %d, is %s, where only a HELLO leads: neither is the other's partner, so neither side is moved",
			api.TagsReported, d.Side)
	}
	return nil
}

// tagText reports whether fp is a tag fingerprint as a VMM reports one,
// or none.
func tagText(fp string) bool { return fp == "" || engine.ValidTagFingerprint(fp) }

// tagPrint is a tag fingerprint as printed (checked: tagText).
func tagPrint(fp string) string {
	if fp == "" {
		return "no tag fingerprint: it sent or took no HELLO"
	}
	return "tag fingerprint " + fp
}

// actName is what an act on a side names of the migration the last look
// found there: its id, and for a migration without one the tag
// fingerprint that side reported (pair paired the two by it: tagsPair;
// they differ only beside a source still migrating, where plan waits,
// or beside a VMM that reports none), if its VMM, whose last answer
// reported control version control, honours it (api.TagsHonoured; an
// older one refuses the field by name, and is asked as before). So a
// VMM that ended that id-less migration and began another between the
// look and the act, or a VMM started anew at the socket, refuses the
// act and changes nothing, as for an id (TestResolveMovedOn). An
// empty id and fingerprint name none: the VMM acts on whatever it
// holds, as before; for two sides that both report no fingerprint
// (neither sent or took a HELLO) resolve sends no such act (unnamedDst).
func actName(id, tag string, control uint16) api.IDArgs {
	if id != "" || control < api.TagsHonoured {
		return api.IDArgs{ID: id}
	}
	return api.IDArgs{TagFingerprint: tag}
}

// leftAlone says, once per socket, that the VMM at sock takes part in
// another migration and is not touched, and what to run when that one is
// an earlier run of this job left unresolved (its guest may wait paused
// for a decision only -resolve makes).
func (r *resolver) leftAlone(sock string, x api.ResolveResult) {
	switch {
	case r.told[sock]:
		return
	case x.Side != api.SideUnknown && x.Side != api.SideMigrating && x.Side != api.SidePostcopyBroken:
		return // nothing waits for a decision there
	}
	if r.told == nil {
		r.told = map[string]bool{}
	}
	r.told[sock] = true
	fmt.Fprintf(r.out, "migrate: the VMM at %s takes part in another migration (id %s, %s): left alone. "+
		"If that is an earlier run of this job, resolve it with:\n    migrate -resolve -config %s\n", sock, idText(x.ID), x.Side, shellArg(r.jobFile))
}

// leftAloneInRole says, once per socket, that the VMM at sock, which
// names the migration resolved in a role its socket's VMM does not take
// in it (x, its answer; rolesPair), is not touched: it is not this
// job's side of that migration, and this job's -resolve would refuse
// it, so none is offered. Before, leftAlone said it took part in
// another migration, naming this one's id
// (TestResolveAfterResumeWrongRoleSaid).
func (r *resolver) leftAloneInRole(sock string, x api.ResolveResult) {
	if r.told[sock] {
		return
	}
	if r.told == nil {
		r.told = map[string]bool{}
	}
	r.told[sock] = true
	fmt.Fprintf(r.out, "migrate: the VMM at %s reports role %.20q in migration %s (%s), which is not its socket's role in it: "+
		"not this job's side of that migration, left alone. Find out from its host what it holds before acting on it by hand.\n",
		sock, x.Role, migrationText(x.ID, x.TagFingerprint), x.Side)
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
		if v == verdictWait && s.Side == api.SidePostcopyBroken {
			if time.Now().Before(pcDeadline) {
				if !pcWaiting {
					fmt.Fprintf(r.out, "migrate: the source gave post-copy up; the destination is still in it "+
						"(it may hold every page and go on, or break): waiting up to %v for it\n", r.pcWait)
					pcWaiting = true
				}
				time.Sleep(500 * time.Millisecond)
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
				return verdictManual, err
			}
		}
		switch {
		case resumed && resumesSource(steps): // beside a failing destination, or one failed since (TestResolveResumesSourceOnceBesideFailed)
			return verdictManual, r.manual(s.Side, d.Side, fmt.Errorf("the source %s confirmed its resume (migration %s), then said %s (migration %s): "+
				"it is not resumed twice", r.src, idText(resumedID), s.Side, idText(r.srcID)))
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
			err := r.notSent(notSent(r.out, r.dst, "migrate-cancel", r.dstID, idsIgnored(r.dst, r.dstControl)))
			if d.Side == sideFailing {
				return verdictSource, nil
			}
			return verdictManual, r.manual(s.Side, d.Side, err)
		case v == verdictCancelDst && refused == "" && time.Now().Before(deadline):
			if why := r.cancelDst(); why != "" {
				refusals[look] = why
				continue // not sent again while it stands so: plan from fresh answers
			}
			time.Sleep(200 * time.Millisecond)
			continue
		case v == verdictCancelDst && d.Side == sideFailing && (refused != "" || !time.Now().Before(deadline)):
			// It refused its cancel, or the wait is past (it may have
			// run out before the source's resume): the guest runs on
			// the source, never on a failing destination, which is
			// sent its cancel once more unless it refused one.
			r.lastCancel(refused)
			return verdictSource, nil
		case (v == verdictWait || v == verdictCancelDst) && time.Now().Before(deadline):
			time.Sleep(200 * time.Millisecond)
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
			// it too (TestResolvePostcopyBrokenQuitNamesTag).
			fmt.Fprint(r.out, postcopyBrokenText(brokenSides{src: r.src, dst: r.dst,
				srcName: r.printedName(r.src, cmp.Or(r.id, r.srcID, r.dstID)), dstName: r.printedName(r.dst, cmp.Or(r.id, r.dstID, r.srcID)),
				srcHolds: s.Side != api.SideNone, dstStays: d.Side == api.SidePostcopyBroken}))
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

// resumesSource reports whether steps resume the source.
func resumesSource(steps []step) bool {
	for _, st := range steps {
		if st.src && st.action == api.ResolveResume {
			return true
		}
	}
	return false
}

// doAll carries out steps in order and stops at the first that fails.
// It carries out none when one of them contradicts what this resolve
// saw (staleStep: a resume of the side whose copy is older, say), and
// returns why.
func (r *resolver) doAll(steps []step) error {
	if err := staleStep(steps, r.sourceRan, r.dstRan); err != nil {
		return err
	}
	for _, st := range steps {
		if err := r.do(st); err != nil {
			return err
		}
	}
	return nil
}

// do carries out one step and checks that the side confirmed it. Each
// step names the migration the last query found on that side (pair: the
// one resolved; actName: by its id, or its tag fingerprint), so a VMM
// that holds another by now refuses it and changes nothing: the step
// fails, and manual says what to run.
func (r *resolver) do(st step) error {
	if st.action == actionQuit { // a discarded destination: its answer may be lost as it exits
		if err := idsIgnored(r.dst, r.dstControl); err != nil {
			r.notSent(notSent(r.out, r.dst, "quit", r.dstID, err))
			return nil // discarded all the same: it never runs the guest
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := callControl(ctx, r.dst, "quit", actName(r.dstID, r.dstTag, r.dstControl), nil); err != nil {
			fmt.Fprintf(r.out, "migrate: quit the discarded destination %s: %v\n", r.dst, err)
		}
		return nil
	}
	sock, n := r.dst, actName(r.dstID, r.dstTag, r.dstControl)
	want := map[string]api.Side{api.ResolveDiscard: api.SideDiscarded, api.ResolveResume: api.SideRunning}[st.action]
	if st.src {
		sock, n = r.src, actName(r.srcID, r.srcTag, r.srcControl)
		want = map[string]api.Side{api.ResolveMigrated: api.SideMigrated, api.ResolveResume: api.SideRunning}[st.action]
	}
	var res api.ResolveResult
	if err := r.call(sock, api.ResolveArgs{Action: st.action, ID: n.ID, TagFingerprint: n.TagFingerprint}, &res); err != nil {
		return fmt.Errorf("%s on %s: %w", st.action, sock, err)
	}
	if res.Side != want {
		return fmt.Errorf("%s on %s left it %s, not %s", st.action, sock, res.Side, want)
	}
	r.toldMigrated = r.toldMigrated || st.src && st.action == api.ResolveMigrated
	if st.action == api.ResolveResume {
		r.sawResumed(st.src)
	}
	fmt.Fprintf(r.out, "migrate: resolved: %s is now %s\n", sock, res.Side)
	return nil
}

// sawResumed records a resume this resolve sent and the side (the
// source's: src) confirmed as a sighting of the guest running there, in
// the migration of the look the step was planned on (remember: the
// memory's): the source ran the guest after the migration began
// (sourceRan), or it ran on the destination (dstRan). A source's resume
// is followed by another look beside a failing destination (resolve:
// verdictCancelDst), where the source may say handover-unknown again (a
// VMM that does not keep what it confirmed): manual then says never to
// run the destination. Until TestResolveConfirmedResumeIsSourceRan it
// offered the destination's resume "only if ... the source never ran
// the guest after it paused", which migrate knew false.
func (r *resolver) sawResumed(src bool) {
	if src {
		r.sawSourceRun(sighting{look: r.seen.looks, at: time.Now(), what: "migrate resumed the source, and it confirmed"}, r.seen.last)
		return
	}
	r.sawDstRun(sighting{look: r.seen.looks, at: time.Now(), what: "migrate resumed the destination, and it confirmed"}, r.seen.last)
}

// manual explains why nothing (more) was resumed and what to run. The
// destination may be run by hand only if the source never ran the guest
// after the switch-over began, and the source only if the destination
// never ran it: migrate cannot ask a dead side, so it leaves the
// destination's line out when it saw the source run, and the source's
// when it saw the guest run on the destination; it says so when it saw
// the source stopped before it could resume the guest (failed: then the
// source cannot be resumed either), and otherwise says what the operator
// must know first; where it saw both run (of one migration: remember),
// it says the copies diverged and that the operator must keep one and
// stop the other, and prints no line (bothRanText). Each line speaks of
// one migration, by its id, and of
// its own two sides only: no resume is offered for a side that takes
// part in another migration than its partner here, and when this job's
// destination was never seen taking part in the source's migration, the
// source's line says so instead of naming that destination (the source
// may have sent the guest elsewhere, where it may run). What it cannot
// know: whether a side that is gone ran the guest; the operator must.
// Each command it prints names the migration, so a VMM that holds
// another one by the time the operator runs it refuses it.
func (r *resolver) manual(src, dst api.Side, cause error) error {
	fmt.Fprintf(r.out, `migrate: the handover cannot be resolved from here: source %s, destination %s (%v).
Nothing more was resumed: the guest must run on exactly one side.
`, src, dst, cause)
	if r.roles != nil {
		fmt.Fprint(r.out, r.roles.advice(r.src, r.dst))
		return fmt.Errorf("handover unresolved (source %s, destination %s): %w", src, dst, cause)
	}
	if r.mismatch {
		fmt.Fprintf(r.out, `The VMMs at this job's two sockets take part in two different migrations (source %s; destination %s):
neither is the other's partner, and nothing here says where the guest of either runs. Resume neither by hand on
what this job shows: resolve each with the job whose two sockets hold both sides of its migration (migrate-status
names the migration a VMM takes part in: its id, and without one its tag_fingerprint).
`, migrationText(r.srcID, r.srcTag), migrationText(r.dstID, r.dstTag))
		return fmt.Errorf("handover unresolved (source %s, destination %s): %w", src, dst, cause)
	}
	if r.misreport {
		fmt.Fprint(r.out, misreportText)
		return fmt.Errorf("handover unresolved (source %s, destination %s): %w", src, dst, cause)
	}
	if r.seen.changed != nil {
		fmt.Fprint(r.out, pairingChangedText(r.seen.changed, r.src, r.dst))
		return fmt.Errorf("handover unresolved (source %s, destination %s): %w", src, dst, cause)
	}
	mid := cmp.Or(r.id, r.srcID, r.dstID) // the migration the lines speak of: named in each command, too
	id := idText(mid)
	if r.sourceRan && r.dstRan { // of one migration (remember)
		fmt.Fprint(r.out, r.bothRanText(src, dst))
		return fmt.Errorf("handover unresolved (source %s, destination %s): %w", src, dst, cause)
	}
	fmt.Fprintf(r.out, `When both control sockets answer again, run:
    migrate -resolve -config %s
`, shellArg(r.jobFile))
	resume := func(sock string) string {
		n := r.printedName(sock, mid)
		return "    " + controlLine(requestJSON("migrate-resolve", api.ResolveArgs{Action: api.ResolveResume, ID: n.ID, TagFingerprint: n.TagFingerprint}), sock) + "\n"
	}
	switch {
	case r.srcOther || r.sourceStopped && !r.sourceRan:
	case r.dstRan:
		fmt.Fprintf(r.out, `Never run the source %s: migrate saw the guest run on the destination of migration %s (it said running, or the source said it handed the guest over), so the source's copy is older.
`, r.src, id)
	case r.dstTook:
		fmt.Fprint(r.out, `Only if the destination host is gone for good and the guest never ran there, run the source with:
`+resume(r.src))
	default:
		fmt.Fprintf(r.out, `This job's destination %s was never seen taking part in the source's migration (id %s): the source may have
sent the guest to another destination (another job's, or an earlier VMM at that socket), where it may run.
Only if the VMM that received migration %s is gone for good and the guest never ran there, run the source with:
%s`, r.dst, id, id, resume(r.src))
	}
	if r.dstOther {
		return fmt.Errorf("handover unresolved (source %s, destination %s): %w", src, dst, cause) // leftAlone said what to run
	}
	resumeDst := resume(r.dst) + "(a destination that had switched to post-copy refuses unless every page had arrived: it lacks the pages the source held.)\n"
	switch {
	case r.sourceRan:
		fmt.Fprintf(r.out, `Never run the destination %s: migrate saw the source run the guest after the migration began, so the destination's copy is older.
`, r.dst)
	case r.sourceStopped:
		fmt.Fprintf(r.out, `The source said failed: its VM was stopped before it could resume the guest, so it did not run the guest after the pause and cannot run it again. If the destination is handover-unknown in migration %s, it holds the current copy, perhaps the only one; run it with:
%s`, id, resumeDst)
	default:
		fmt.Fprintf(r.out, `Only if the source of migration %s is gone for good, the destination is handover-unknown in that migration (its migrate-status names the id), and the source never ran the guest after it paused for the switch-over (a source that said "running" after its migration failed resumed it: the destination's copy is then older), run the destination with:
%s`, id, resumeDst)
	}
	return fmt.Errorf("handover unresolved (source %s, destination %s): %w", src, dst, cause)
}

// printedName is what a command manual prints for the side at sock names
// of the migration mid (its id; "" for one without): the id, and
// without one the tag fingerprint that side reported, well formed
// (tagText), to a VMM that honours it (actName), so that a VMM that
// holds another migration by the time the operator runs the command
// refuses it. What it cannot name: the fingerprint for a side that did
// not answer (its version is unknown, and an older VMM refuses the
// field by name): that command names no migration, as before.
func (r *resolver) printedName(sock, mid string) api.IDArgs {
	tag, control := r.dstTag, r.dstControl
	if sock == r.src {
		tag, control = r.srcTag, r.srcControl
	}
	return lineName(mid, tag, control)
}

// lineName is what a command printed for the operator names of a
// migration a VMM reported (id, tag fingerprint, control version): as
// actName, with a malformed fingerprint (tagText) left out. Every
// printed command names the migration this way (resolver.printedName,
// postcopyBrokenText's quit, jobMigration's migrate-start-postcopy);
// notSent's, for a VMM from before api.IDsHonoured, names nothing.
func lineName(id, tag string, control uint16) api.IDArgs {
	if !tagText(tag) {
		tag = ""
	}
	return actName(id, tag, control)
}

// lineArgs is n as a printed command's arguments: nil, none, when n
// names no migration.
func lineArgs(n api.IDArgs) any {
	if n == (api.IDArgs{}) {
		return nil
	}
	return n
}

// migrationText names a side's migration in manual's text: its id, and
// without one its tag fingerprint (if well formed: tagText).
func migrationText(id, fp string) string {
	if id != "" || !tagText(fp) {
		return "id " + idText(id)
	}
	return "id " + idText(id) + ", " + tagPrint(fp)
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

// cleanup is resolve after a failure or a cancel: the source runs (or
// never stopped), so a destination still waiting is cancelled and one
// left handover-unknown is discarded. It only reports problems.
func (r *resolver) cleanup() {
	if _, err := r.resolve(); err != nil {
		fmt.Fprintln(r.out, "migrate: cleaning up:", err)
	}
}

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

// resolveMain is migrate -resolve: read the job, resolve, say the outcome.
func resolveMain(path string, stdout, stderr io.Writer) int {
	j := parseJobFile(path, stderr)
	if j == nil {
		return 2
	}
	r := newResolver(j, stderr)
	v, err := r.resolve()
	code := 0
	switch {
	case err != nil:
		fmt.Fprintln(stderr, "migrate:", err)
		return 1
	case v == verdictMoved:
		// The source of the migration the destination runs (r.dstID:
		// the pair's), not whatever answers at its socket by now.
		var notSrc *errNotSource
		var unnamed *errUnnamedRunning
		switch side, qerr := quitSource(j.Source.Control, r.dstID, r.dstTag, stderr); {
		case errors.As(qerr, &notSrc):
			fmt.Fprintf(stdout, "resolved: the guest runs on the destination; %v\n", qerr)
		case errors.As(qerr, &unnamed): // it may be this migration's source: not settled
			fmt.Fprintf(stdout, "resolved: the guest runs on the destination; %v\n", qerr)
			code = 1
		case qerr != nil:
			fmt.Fprintf(stdout, "resolved: the guest runs on the destination; %s\n", r.sourceEnd(side, false))
			r.notSent(qerr)
		case side == api.SideMigrated, side == api.SidePostcopyBroken:
			fmt.Fprintf(stdout, "resolved: the guest runs on the destination; %s\n", r.sourceEnd(side, true))
		case side == api.SideRunning: // a sender in this migration (quitSource): resumed since the resolve's look
			fmt.Fprintln(stderr, "migrate:", errBothRun(j.Source.Control, j.Destination.Control, resumedSince))
			return 1
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
			fmt.Fprintf(stderr, "migrate: not done: the source %s says %s in this migration, not that it handed the guest over\n",
				j.Source.Control, side)
			code = 1
		}
	case v == verdictIdle:
		fmt.Fprintln(stdout, "nothing to resolve: no side of this job holds a paused copy of the guest waiting for a decision "+
			"(the source's VMM holds no migration, or its VM stopped before it could resume the guest; the destination holds none)")
	default:
		fmt.Fprintln(stdout, "resolved: the guest runs on the source")
	}
	if r.undone != nil { // printed with the line to run by hand
		fmt.Fprintln(stderr, "migrate: not done:", r.undone)
		return 1
	}
	return code
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
// says so on log, with the line to run by hand, and returns that
// error (*errNotSent) with the side it said.
func quitSource(sock, id, tag string, log io.Writer) (api.Side, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var res api.ResolveResult
	if err := callControl(ctx, sock, "migrate-resolve", api.ResolveArgs{Action: api.ResolveQuery}, &res); err != nil {
		return sideUnreachable, nil
	}
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
		return res.Side, notSent(log, sock, "quit", res.ID, err)
	}
	// An answer lost as the VMM exits is a quit all the same.
	var refused *control.RemoteError
	if err := callControl(ctx, sock, "quit", actName(res.ID, res.TagFingerprint, res.Control), nil); errors.As(err, &refused) {
		return api.SideNone, nil
	}
	return res.Side, nil
}
