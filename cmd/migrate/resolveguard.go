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
// TestResolveRefusesStaleCopy. What it cannot tell: whether the flag was
// set by the migration the step names (neither flag records which one
// set it), so a reused id errs towards refusing.
// What it does not look at: verdicts without steps (a stale side that
// runs already is reported as the plan says, not refused), and the
// cancel of a destination (resolvecancel.go's own guards).

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
