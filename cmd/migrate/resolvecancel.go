package main

import (
	"cmp"
	"errors"
	"fmt"

	"github.com/ferryvm/ferry/vmm/api"
)

// The cancel of a destination beside a running source (plan's
// verdictCancelDst), as resolve sends it: named (actName), sent once
// where its VMM says why it did not apply it (cancelDst), not sent
// where nothing could name the migration (unnamedDst).

// Two sides without an id and without a tag fingerprint (neither sent or
// took a HELLO; tagsPair pairs them by "" == "") are named by nothing in
// an act: actName gives the VMM no name, and it acts on whatever it
// holds when the act arrives. Of the acts plan asks for, only one can
// reach such a pair from VMMs that report fingerprints
// (api.TagsReported): the cancel of a destination still migrating (or
// failing) beside a running source. Every other act goes to a side that
// a HELLO led to (handover-unknown, migrated, discarded, running
// destination, postcopy-broken), whose VMM reports the fingerprint; a
// VMM that reports such a side without one misreports, and pair pairs
// it with nothing (misreport): no act goes to either side. That
// cancel could hit another migration than the one looked at: the
// destination may be a stranger that waits at the job's socket for
// another source (nothing but "" == "" paired it: no race needed), or
// the VMM at the socket may hold another migration by the time the act
// arrives (one started anew there after the look: a destination VMM
// takes no second incoming migration, it exits once its one failed).
// Such a cancel costs that other migration, and may cost its guest: a
// destination that loaded the state and waits for COMMIT from a source
// that died may hold the only copy, and a cancel after LOADED gives it
// up (plan's doc). The control protocol offers no
// guard: a name with neither id nor fingerprint names none (vmm
// migration_id.go), and the one thing that would tie the act to the VMM
// that answered the look, the query and the cancel on one connection
// (vmm/control carries several requests on one), would not tell a
// stranger apart, and control.Call speaks one request per connection. So
// resolve does not cancel it (unnamedDst): it took no HELLO, so it holds
// no copy of this guest, and the guest runs on the source; leaveUnnamed
// prints no cancel to run by hand either (it would name nothing), but
// the VMM's migrate-status, and keeps it as not done (exit 1).
// Beside a destination older than api.TagsReported, which cannot say
// whether it took a HELLO, the cancel goes unnamed as before (pair says
// so: paired by the absence of an id). Beside a source older than that,
// such a destination pairs only while the source stands where no HELLO
// need have led (helloless: it runs, failed, or still migrates), and
// beside a running one it is left as here.

// unnamedDst reports whether an act on the destination would name its
// migration by nothing although its VMM reports fingerprints: no id and
// no tag fingerprint from a VMM of api.TagsReported or later, so its
// migration took no HELLO.
func (r *resolver) unnamedDst() bool {
	return r.dstID == "" && r.dstTag == "" && r.dstControl >= api.TagsReported
}

// leaveUnnamed says why a destination on side d beside a running source
// is not cancelled (unnamedDst), and prints no cancel to run by hand
// either (handCmd, mayPrint): it would name nothing, and cancel
// whatever that VMM holds when it is run, long after this look; before,
// it printed that line (TestResolveLeavesUnnamedDestination). It prints
// that VMM's migrate-status instead. It keeps the cancel as not sent
// (r.undone, errNotSent), as for an older VMM: the guest runs on the
// source, but a destination VMM that may be this job's still holds a
// migration and refuses migrate-incoming until it ends, so migrate
// -resolve exits 1 and says what was not done; before, it exited 0 as
// if nothing were left (TestResolveLeavesUnnamedDestination). What it
// cannot do: end that migration; its VMM's incoming_timeout, or the
// operator, does.
func (r *resolver) leaveUnnamed(d api.Side) {
	fmt.Fprintf(r.out, "migrate: the destination %s (%s) takes part in a migration with neither an id nor a tag fingerprint: "+
		"it took no HELLO, so it holds no copy of this guest, and nothing shows it to be this source's partner. A cancel could "+
		"name no migration, and would cancel whatever its VMM holds when it arrives, perhaps another job's: not sent.\n%s", r.dst, d,
		handCmd{sock: r.dst, cmd: "migrate-cancel", what: "cancel", control: r.dstControl, answered: true}.text(
			"Only if it is the destination started for this source's migration, cancel it by hand, right after its "+
				"migrate-status still reports that migration (receive, no id, no tag_fingerprint)."))
	r.notSent(&errNotSent{cmd: "migrate-cancel", sock: r.dst, why: errUnnamed})
}

// errUnnamed is why a cancel is not sent to a destination that
// unnamedDst finds.
var errUnnamed = errors.New("its migration has neither an id nor a tag fingerprint (it took no HELLO), so a cancel could name none " +
	"and would cancel whatever its VMM holds when it arrives")

// cancelDst sends the destination the cancel a cancel verdict asks for
// (the caller checked that its VMM honours the id), naming the
// migration the last query found there (actName), and returns what the
// VMM said when it did not apply it: "" when it did, or gave no answer
// (the next query tells more, and the cancel may go again). A VMM that
// says why (it holds another migration by then, or none; a pre-copy
// destination acts on COMMIT; post-copy; it cannot read the act) is
// told nothing more by resolve while it stands so (dstLook), which
// says the reason here and plans from fresh answers
// (TestResolveCancelRefused). Before, the cancel went again at every
// query until the wait ran out, and only the last cancel of a failing
// destination said a refusal.
func (r *resolver) cancelDst() string {
	res := r.sendCancel()
	if res.Cancelled || res.Why == "" {
		return ""
	}
	fmt.Fprintf(r.out, "migrate: the destination %s did not cancel migration %s (its VMM: %s): not asked again while it stands so; asking both sides afresh\n",
		r.dst, migrationText(r.dstID, r.dstTag), res.Why)
	return res.Why
}

// dstLook is the destination as one look of resolve found it: its side
// (dstSide) and the migration it reports. A cancel's refusal (cancelDst)
// speaks of the look the cancel was sent on only: a destination that
// moved on since (from acting on COMMIT to failing, or to another
// migration) may answer another cancel otherwise, and its old reason,
// said of it, would be stale. A VMM whose answers keep changing is sent
// one cancel for each look it has not refused yet, until the resolve's
// wait runs out.
type dstLook struct {
	side    api.Side
	id, tag string
}

// lastCancel sends a failing destination its cancel once the wait ran
// out beside a running source (the caller checked that the VMM honours
// the id), unless it refused one already as it stands now (refused:
// what its VMM said, cancelDst, on the same dstLook; "" for a
// refusal given before it was failing, which is not said of it), and
// says so when it did not take, with what its VMM
// answered (a refusal too: it holds another migration by then,
// TestLastCancelSaysRefusal): the destination never runs the guest and
// ends on its own, its VMM refusing migrate-incoming until then. It
// does not wait for it to end.
func (r *resolver) lastCancel(refused string) {
	if refused == "" {
		res := r.sendCancel()
		if res.Cancelled {
			return
		}
		refused = cmp.Or(res.Why, "no answer")
	}
	fmt.Fprintf(r.out, "migrate: migrate-cancel of the failing destination %s (migration %s) did not take (its VMM: %s). "+
		"Its handover failed: it never runs the guest, and its migration ends on its own; its VMM refuses migrate-incoming until then.\n",
		r.dst, migrationText(r.dstID, r.dstTag), refused)
}

// sendCancel sends the destination the cancel of the migration its last
// look found (actName), records it (the step says whether it reached
// the VMM: resolveRecord.cancelSent), and returns its answer
// (cancelCall's; zero where none came). The caller checked that the VMM
// honours the name (idsIgnored).
func (r *resolver) sendCancel() api.CancelResult {
	n := actName(r.dstID, r.dstTag, r.dstControl)
	res, err := cancelCall(r.dst, n)
	r.rec.cancelSent(n, res, err)
	return res
}
