package main

import (
	"fmt"

	"github.com/ferryvm/ferry/vmm/api"
)

// Where a HELLO must have led: a VMM of api.TagsReported or later
// reports a migration's tag fingerprint from its HELLO on (a source
// sets it before HELLO goes out, a destination as it takes one), so a
// side standing where only a HELLO leads reports one. tagsPair leans on
// it twice: beside a VMM older than that (helloless), and beside a VMM
// that reports such a side without one (misreport).

// srcPastHello holds the sides a source reaches only after it sent a
// HELLO: it got as far as COMMIT (handover-unknown, migrated) or
// post-copy (post-copy-broken).
var srcPastHello = map[api.Side]bool{api.SideUnknown: true, api.SideMigrated: true, api.SidePostcopyBroken: true}

// dstPastHello holds the sides a destination reaches only after it took
// a HELLO and loaded the state: handover-unknown, discarded, running,
// post-copy-broken. Only a receiver's: a sender reports running after
// a migration that failed before its HELLO (pair checks the roles
// first: rolesPair).
var dstPastHello = map[api.Side]bool{api.SideUnknown: true, api.SideDiscarded: true, api.SideRunning: true,
	api.SidePostcopyBroken: true}

// errMisreport is misreport's error: the side at which (source or
// destination) reports side without a tag fingerprint although its
// VMM reports fingerprints.
type errMisreport struct {
	which string
	side  api.Side
}

func (e *errMisreport) Error() string {
	return fmt.Sprintf("the %s reports %s but no tag fingerprint, which its VMM (control version %d or later) reports once a HELLO "+
		"led it there: it misreports, and nothing names its migration", e.which, e.side, api.TagsReported)
}

// misreport is tagsPair's check of two id-less sides from VMMs that
// both report fingerprints, a sender and a receiver (rolesPair, which
// pair runs first: a sender's running is no receiver's, reached
// without a HELLO): an *errMisreport when either stands where
// only a HELLO leads (srcPastHello, dstPastHello) but reports no
// fingerprint. Such a VMM misreports. Nothing it says names the
// migration its copy came from or went to, so nothing shows the other
// side to be its partner ("" == "" pairs two sides that took no HELLO,
// tagsPair), and every act on it would name no migration (actName): it
// would resume, discard or quit whatever its VMM holds when it arrives.
// plan would resume a handover-unknown source beside a failure that
// may be a stranger's (its real destination may run the guest: two
// running copies), or discard a handover-unknown destination, perhaps
// the only copy of a guest, beside a source that may not be its own.
// So neither side is moved, and manual prints no command, which would
// name nothing either (TestResolveMisreportedHello). Before, the two
// were paired by "" == "" and acted on unnamed. What it cannot tell: a
// VMM that reports a fingerprint it does not hold (tagsPair: a VMM may
// report any).
func misreport(s, d api.ResolveResult) error {
	switch {
	case s.TagFingerprint == "" && srcPastHello[s.Side]:
		return &errMisreport{which: "source", side: s.Side}
	case d.TagFingerprint == "" && dstPastHello[d.Side]:
		return &errMisreport{which: "destination", side: d.Side}
	}
	return nil
}

// misreportText is what manual tells the operator beside a side that
// misreports (misreport): no command, since none could name the
// migration, but what to find out before acting by hand.
const misreportText = `A VMM at this job's sockets reports a side that only a HELLO leads to, but no tag fingerprint: it misreports,
and nothing it says names the migration its copy came from or went to. Nothing here shows the two sides to be
partners, and any command to either would name no migration: it would act on whatever that VMM holds when it
arrives. Move neither side on what this job shows. Find out from both hosts (their VMMs' logs, the migrate that
started the migration) which VMM sent the guest to which and whether it ran anywhere since; resume, discard or
quit by hand only the side that must, right after its migrate-status shows it still stands as it does now:
never resume a source beside a destination that may run the guest, and never discard or quit what may be the
guest's only copy. Look into why that VMM reports no tag fingerprint.
`
