package main

import (
	"errors"

	"github.com/ferryvm/ferry/vmm/api"
)

// What the resolver saw decides which copy of the guest is older
// (resolver.sourceRan, resolver.dstRan), and plan, a pure function of
// the current look, does not know it. So before any step of a plan is
// carried out, the whole plan is checked against it (doAll: one place,
// for every plan resolve carries out), and a plan with a step that
// contradicts it is refused as a whole: nothing is sent, not even the
// steps before that one (a destination's discard comes before the
// source's resume), and resolve ends manual with the refusal as its
// cause.
//
//	saw                 refused                       why
//	dstRan              the source's resume           its copy is older than what ran on the destination
//	dstRan              the destination's discard     it gives up the copy that ran last
//	sourceRan           the destination's resume      its copy is older than what the source ran
//	sourceRan           the source's migrated         it gives up the source's copy, the newer
//
// A VMM moves no side back (a destination that ran the guest never
// fails or goes handover-unknown in that migration again; a source that
// resumed it is never handover-unknown in it again), so the looks that
// lead here are of a VMM that breaks that, or of another migration
// under the same name (an id reused by hand; -resolve, which learns the
// migration from each look, pairs whatever both sides report at each):
// TestResolveRefusesStaleCopy. The flags are of the migration the step
// names: a look of another migration than the one that set them ends
// the resolve before any plan is checked (resolveseen.go); an id reused
// within one migration's looks cannot be told apart, and errs towards
// refusing.
// A plan without steps is checked by staleRun instead: a side that
// runs already, whose copy they call older, is not said to be where the
// guest runs. What neither looks at: the cancel of a destination
// (resolvecancel.go's own guards).

// staleStep returns why the first of steps that contradicts what the
// resolver saw is refused: sourceRan, the source ran the guest after
// the migration began; dstRan, the guest ran on its destination
// (resolver's fields). nil when none does. It is pure
// (TestStaleStep covers every plan against every pair of flags).
func staleStep(steps []step, sourceRan, dstRan bool) error {
	for _, st := range steps {
		switch {
		case st.src && st.action == api.ResolveResume && dstRan:
			return errors.New("the source's resume is refused: migrate saw the guest run on this migration's destination " +
				"(it said running, or the source said it handed the guest over), so the source's copy is older and must never run again")
		case !st.src && st.action == api.ResolveDiscard && dstRan:
			return errors.New("the destination's discard is refused: migrate saw the guest run on this migration's destination " +
				"(it said running, or the source said it handed the guest over), so its copy is the one that ran last")
		case !st.src && st.action == api.ResolveResume && sourceRan:
			return errors.New("the destination's resume is refused: migrate saw the source run the guest after this migration " +
				"began, so the destination's copy is older and must never run")
		case st.src && st.action == api.ResolveMigrated && sourceRan:
			return errors.New("the source's migrated is refused: migrate saw the source run the guest after this migration " +
				"began, so its copy is newer than the destination's, which runs: the guest ran on both sides")
		}
	}
	return nil
}

// staleRun returns why a look at which the source is at side src and
// the destination at dst, with no step to send, is not resolved: one of
// them runs the guest while the resolver's flags call its copy older
// (the source after the guest ran on the destination, dstRan; the
// destination after the source ran it, sourceRan). The guest then ran
// on both sides, one after the other, from diverged states, or may run
// on both now beside a side that does not answer. nil otherwise, and
// where both run now (plan's verdictBothRun says so itself). Nothing is
// moved or stopped on it: the side that runs may hold the only copy
// that runs, and only the operator can tell which state is the guest's.
// It is pure (TestStaleRun). Before, resolve said the guest runs there,
// "resolved", exit 0 (TestResolveStaleRunNotResolved).
func staleRun(src, dst api.Side, sourceRan, dstRan bool) error {
	switch {
	case src == api.SideRunning && dst == api.SideRunning:
		return nil
	case src == api.SideRunning && dstRan:
		return errors.New("the source runs the guest, but migrate saw it run on this migration's destination (it said running, " +
			"or the source said it handed the guest over): the source runs an older copy, so the guest ran on both sides, " +
			"one after the other; nothing was stopped or resumed: find out from the guest which copy holds its state before stopping either")
	case dst == api.SideRunning && sourceRan:
		return errors.New("the destination runs the guest, but migrate saw the source run it after this migration began: " +
			"the destination runs an older copy, so the guest ran on both sides (a source that does not answer may run it still); " +
			"nothing was stopped or resumed: find out from the guest which copy holds its state before stopping either")
	}
	return nil
}
