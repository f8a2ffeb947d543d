package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/vmm/api"
)

// The policy of one look (plan: from the two sides' answers, the steps
// to take and the verdict they lead to) and the carrying out of its
// steps (doAll, do), each confirmed by the side it moved. The loop that
// asks both sides and calls them is resolve (resolve.go); what a step
// must not contradict is resolveguard.go's.

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
			r.notSent(notSent(r.out, r.dst, "quit", r.dstID, r.dstControl, err))
			return nil // discarded all the same: it never runs the guest
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		n := actName(r.dstID, r.dstTag, r.dstControl)
		err := callControl(ctx, r.dst, "quit", n, nil)
		r.rec.sent(false, actionQuit, n, "", err)
		if err != nil {
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
	err := r.call(sock, api.ResolveArgs{Action: st.action, ID: n.ID, TagFingerprint: n.TagFingerprint}, &res)
	var unconfirmed error
	if err == nil {
		unconfirmed = confirms(st, res, want)
	}
	r.rec.sent(st.src, st.action, n, res.Side, cmp.Or(err, unconfirmed))
	var uc *errUnconfirmed
	switch {
	case err != nil:
		return fmt.Errorf("%s on %s: %w", st.action, sock, err)
	case errors.As(unconfirmed, &uc) && uc.otherRole():
		// Another role, whatever side: the VMM at that socket is not
		// this job's side of the migration (resolveTarget: a VMM
		// resumes in either role). No further act of the look is
		// sent, and the resolve ends manual (wrongRole). Until
		// TestResolveJSONStepOtherSideAndRole, an answer in another
		// side too took the branch below: no roles said, and manual
		// printed its commands for a VMM that is not this job's.
		return fmt.Errorf("%s on %s: %w", st.action, sock, r.wrongRole(st.src, res, unconfirmed))
	case unconfirmed != nil: // another side, in the role asked
		return fmt.Errorf("%s on %s: %w", st.action, sock, unconfirmed)
	}
	r.toldMigrated = r.toldMigrated || st.src && st.action == api.ResolveMigrated
	if st.action == api.ResolveResume {
		r.sawResumed(st.src)
	}
	fmt.Fprintf(r.out, "migrate: resolved: %s is now %s\n", sock, res.Side)
	return nil
}

// errUnconfirmed is why a migrate-resolve action that its VMM answered
// without an error, but not as the act asks, is no confirmation: in
// another side than want (do fails the step, and no further act of the
// look is sent: doAll), or in another role than the side it was sent to
// takes in the migration, a sender at the source's socket, a receiver
// at the destination's (a VMM resumes in either role; do fails the
// step with the pair's wrong roles: wrongRole), or both (the role
// decides: wrongRole, its error naming the side too). Its step says so
// (outcome unconfirmed). Until TestResolveJSONStepOtherSide, either step had no
// error in the JSON: the other side showed only as the step's side, and
// the other role not at all.
type errUnconfirmed struct {
	action         string
	side, want     api.Side
	role, wantRole string
	sentToSource   bool
}

func (e *errUnconfirmed) Error() string {
	to := "destination"
	if e.sentToSource {
		to = "source"
	}
	side := fmt.Sprintf("side %s, not %s, which %s asks for", e.side, e.want, e.action)
	if !e.otherRole() {
		return fmt.Sprintf("the %s's VMM answered %s with %s: no confirmation", to, e.action, side)
	}
	if e.side == e.want {
		side = "side " + string(e.side)
	}
	return fmt.Sprintf("the VMM at the %s's socket answered %s in role %q (%s), not %s, the %s's role in this migration: "+
		"it is not this migration's %s, and may have acted on it; no confirmation", to, e.action, e.role, side, e.wantRole, to, to)
}

// otherRole reports whether the answer came in another role than the
// side it was sent to takes (whatever its side): do then fails the step
// with the pair's wrong roles (wrongRole).
func (e *errUnconfirmed) otherRole() bool { return e.role != e.wantRole }

// wrongRole is do's error for res, the answer of the side a step was
// sent to (the source's: src) in a role that side does not take in the
// migration (unconfirmed, confirms's, which says that VMM may have
// acted): unconfirmed with the failure of the pair of that answer and
// the other side's last look (rolesPair, which records it for manual:
// the wrong roles said, no command printed), or unconfirmed alone where
// that pair stands (a VMM that reports no role). manual's advice for
// the roles then says which acts took or may have (actsDone: this one
// among them; until TestRolesAdviceSaysActsDone it said nothing was
// moved, though the look's acts before this one had taken). Until
// TestResolveResumeAnsweredInWrongRole it was no error: the look's acts
// went on, and where no further look followed (a source resumed beside
// a failed or discarded destination, a destination beside a migrated
// source) the verdict was taken, "the guest runs on the source", a
// discarded destination quit though it might hold the guest's only
// copy; only a cancel verdict's next look refused the pair.
func (r *resolver) wrongRole(src bool, res api.ResolveResult, unconfirmed error) error {
	s, d := r.lastSrc, res
	if src {
		s, d = res, r.lastDst
	}
	if err := r.rolesPair(s, d); err != nil {
		return fmt.Errorf("%v; %w", unconfirmed, r.stopped(err))
	}
	return unconfirmed
}

// confirms reports why res, the answer to st, does not confirm it
// (*errUnconfirmed): another side than want, or another role than st's
// side takes; nil where it does.
func confirms(st step, res api.ResolveResult, want api.Side) error {
	wantRole := transport.RoleReceive.String()
	if st.src {
		wantRole = transport.RoleSend.String()
	}
	if res.Side == want && res.Role == wantRole {
		return nil
	}
	return &errUnconfirmed{action: st.action, side: res.Side, want: want, role: res.Role, wantRole: wantRole, sentToSource: st.src}
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
