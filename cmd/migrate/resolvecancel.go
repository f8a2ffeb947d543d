package main

import (
	"cmp"
	"fmt"
)

// The cancel of a destination beside a running source (plan's
// verdictCancelDst), as resolve sends it: named (actName), and sent once
// where its VMM says why it did not apply it (cancelDst).

// cancelDst sends the destination the cancel a cancel verdict asks for
// (the caller checked that its VMM honours the id), naming the
// migration the last query found there (actName), and returns what the
// VMM said when it did not apply it: "" when it did, or gave no answer
// (the next query tells more, and the cancel may go again). A VMM that
// says why (it holds another migration by then, or none; a pre-copy
// destination acts on COMMIT; post-copy; it cannot read the act) is
// told nothing more by resolve, which says the reason here and plans
// from fresh answers (TestResolveCancelRefused). Before, the cancel went
// again at every query until the wait ran out, and only the last
// cancel of a failing destination said a refusal.
func (r *resolver) cancelDst() string {
	res, err := cancelNamed(r.dst, actName(r.dstID, r.dstTag, r.dstControl), r.dstControl, r.out)
	r.notSent(err)
	if res.Cancelled || res.Why == "" {
		return ""
	}
	fmt.Fprintf(r.out, "migrate: the destination %s did not cancel migration %s (its VMM: %s): not asked again; asking both sides afresh\n",
		r.dst, migrationText(r.dstID, r.dstTag), res.Why)
	return res.Why
}

// lastCancel sends a failing destination its cancel once the wait ran
// out beside a running source (the caller checked that the VMM honours
// the id), unless it refused one already (refused: what its VMM said,
// cancelDst), and says so when it did not take, with what its VMM
// answered (a refusal too: it holds another migration by then,
// TestLastCancelSaysRefusal): the destination never runs the guest and
// ends on its own, its VMM refusing migrate-incoming until then. It
// does not wait for it to end.
func (r *resolver) lastCancel(refused string) {
	if refused == "" {
		res, _ := cancelNamed(r.dst, actName(r.dstID, r.dstTag, r.dstControl), r.dstControl, r.out)
		if res.Cancelled {
			return
		}
		refused = cmp.Or(res.Why, "no answer")
	}
	fmt.Fprintf(r.out, "migrate: migrate-cancel of the failing destination %s (migration %s) did not take (its VMM: %s). "+
		"Its handover failed: it never runs the guest, and its migration ends on its own; its VMM refuses migrate-incoming until then.\n",
		r.dst, migrationText(r.dstID, r.dstTag), refused)
}
