package main

import (
	"cmp"
	"errors"
	"fmt"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/vmm/api"
)

// The roles of two sides (resolver.pair): a migration has one source,
// which sends, and one destination, which receives. The VMM at a job's
// source socket must send in the migration resolved and the one at its
// destination socket receive; a VMM that names that migration (its id,
// or without one its tag fingerprint) in the other role is not this
// job's side of it, and no act is sent on the two (rolesPair; pair's
// errStopped says what that means after an earlier act):
//
//	source socket   destination socket   one name for both   said (errRoles)
//	receive         send                 yes                 swapped: the job names its sockets the wrong way round
//	send            send                 yes                 shared: one name, two migrations (reused by hand)
//	receive         receive              yes                 shared
//	a wrong role    no part in it        -                   oneSide: not this job's side of its migration
//	a wrong role    any other            no                  strangers: two migrations (resolver.mismatch)
//	a role neither send nor receive, at either socket         unknown: this migrate does not know it
//
// A side that takes no part in the migration resolved (with an id, one
// that reports another) is not judged, whatever role it reports.
//
// Except (migrate -resolve only, no id): a receiver at the source's
// socket whose migration is over and which runs the guest, beside a
// destination VMM that answers and takes part in no migration, is not
// refused (sourceArrivedBesideNone). A VMM reports its last migration's
// role until its next one begins, so the source of a guest that arrived
// by migration reports "receive" until it is sent on: refused, every
// -resolve of a job whose migrate failed before its migrate-send
// (migrate itself says to run it once both sockets answer) exited 1
// beside a new destination VMM, saying to find the other side of a
// migration that ended long before (TestResolveMigratedInSourceBesideNone).
//
// Where migrate acts on the VMM at the source's socket as the source
// of the migration without a look at both sides (quitSource's quit once
// the guest runs on the destination, resolve's verdict source after the
// source's resume, follow's polls and Ctrl-C's cancel), that VMM must
// report "send" in it (sourceSends, statusSends): a receiver of that
// migration, or a VMM in a role this migrate does not know, is left
// alone. An honest source reports "send" from its migrate-send on, also
// one whose guest arrived by migration (a VMM's record is the
// migration it began last: vmm migration.begin).
//
// Where migrate takes the end of the migration at the destination's
// socket as the destination's without a look at both sides
// (finishCompleted's wait for its report), that VMM must report
// "receive" in it (statusReceives), by the same rule: a sender there
// that names the migration, or a VMM in a role this migrate does not
// know, did not complete it as its destination.
//
// What it cannot tell: a VMM may report any role and any name; roles
// and names keep honest migrations apart, nothing more.

// roleTrouble is what errRoles found.
type roleTrouble int

const (
	rolesStrangers roleTrouble = iota + 1 // two migrations, told apart by their names too
	rolesSwapped                          // one migration: its destination at the source's socket, its source at the destination's
	rolesShared                           // two VMMs in one role under one name: the name was reused
	rolesOneSide                          // one VMM in the wrong role for its socket, the other in no part of its migration
	rolesUnknown                          // a VMM reports a role this migrate does not know (knownRole)
)

// errRoles is rolesPair's error: the VMMs at the job's sockets do not
// stand as one migration's source and destination, so no act is sent
// on them (pair's errStopped says so), and manual says why (advice) and
// prints no command: none could say which VMM holds which copy.
type errRoles struct {
	trouble roleTrouble
	// src and dst are the roles the two sides reported in the migration
	// named; "" for a side that takes no part in it.
	src, dst string
	// name is the migration named (migrationText), "" for strangers.
	name string
	// sock is the control socket of the VMM that reports a role this
	// migrate does not know (rolesUnknown; resolver.rolesPair sets it),
	// "" where not known: then Error names the side instead.
	sock string
}

func (e *errRoles) Error() string {
	switch e.trouble {
	case rolesSwapped:
		return fmt.Sprintf("the VMM at the source's socket receives in migration %s and the one at the destination's sends in it: "+
			"the job names its two sockets the wrong way round", e.name)
	case rolesShared:
		return fmt.Sprintf("the VMMs at both sockets report role %.20q in migration %s: a migration has one source and one destination, "+
			"so that name was reused for two migrations", e.src, e.name)
	case rolesOneSide:
		which, role := "source", e.src
		if role == "" {
			which, role = "destination", e.dst
		}
		return fmt.Sprintf("the VMM at the %s's socket reports role %.20q in migration %s, which is not a %s's, and the other "+
			"VMM takes no part in that migration: neither is this job's side of it", which, role, e.name, which)
	case rolesUnknown:
		which, role := e.unknownSide()
		at := cmp.Or(e.sock, "the "+which+"'s socket")
		return fmt.Sprintf("the VMM at %s reports role %.20q, which this migrate does not know (it knows %q and %q)",
			at, role, transport.RoleSend, transport.RoleReceive)
	}
	return fmt.Sprintf("the VMM at the source's socket has role %.20q in its migration, the one at the destination's %.20q: "+
		"a source's partner receives, so neither is the other's partner", e.src, e.dst)
}

// rolesPair is pair's check of the roles two sides take in the
// migration resolved: id (resolver.id) when migrate knows it, else ("",
// migrate -resolve) the one the two sides report. Only a side that
// names it takes a role in it: with id, a side that reports another
// migration (pair counts it as none) is not looked at. nil when the
// VMM at the source's socket sends or takes no part, and the one at the
// destination's receives or takes no part; else an *errRoles, and
// nothing may be moved.
//
// Before ab3f4f3 roles were not looked at; until the role check with
// ids (TestResolveRolesWithID), only without an id and only where both
// sides reported a migration: with an id, a sender at the destination's
// socket that reused the source's id, running its own guest, had a
// handover-unknown source told migrated and quit (its real destination
// perhaps never ran the guest), a receiver at the source's socket that
// ran had this migration's handover-unknown destination discarded and
// quit (perhaps the guest's only copy), and a job naming its sockets
// the wrong way round had a discard sent to the sender (the reference
// VMM refuses a source's discard; one that took it had the receiver
// resumed next). A side in the wrong role beside a VMM in no migration
// was resolved as this job's: a receiver that runs was said to be the
// source running the guest, a handover-unknown sender was offered the
// destination's resume (TestResolveOneSideWrongRole).
func rolesPair(s, d api.ResolveResult, id string) error {
	send, receive := transport.RoleSend.String(), transport.RoleReceive.String()
	if id != "" {
		if s.ID != id {
			s.Role = ""
		}
		if d.ID != id {
			d.Role = ""
		}
	}
	if (s.Role == "" || s.Role == send) && (d.Role == "" || d.Role == receive) {
		return nil
	}
	e := &errRoles{src: s.Role, dst: d.Role}
	switch {
	case !knownRole(s.Role) || !knownRole(d.Role):
		x := s
		if knownRole(s.Role) {
			x = d
		}
		e.trouble, e.name = rolesUnknown, migrationText(x.ID, x.TagFingerprint)
	case s.Role == "" || d.Role == "":
		if sourceArrivedBesideNone(s, d, id) {
			return nil
		}
		x := s
		if s.Role == "" {
			x = d
		}
		e.trouble, e.name = rolesOneSide, migrationText(x.ID, x.TagFingerprint)
	case !oneName(s, d):
		e.trouble = rolesStrangers
	case s.Role == receive && d.Role == send:
		e.trouble, e.name = rolesSwapped, migrationText(s.ID, s.TagFingerprint)
	default: // both send or both receive: the pairs of known roles left
		e.trouble, e.name = rolesShared, migrationText(s.ID, s.TagFingerprint)
	}
	return e
}

// knownRole reports whether role is one this migrate knows: send,
// receive, or none (a VMM that took part in no migration). Every VMM of
// this repository reports one of them; another comes from a VMM newer
// than this migrate or a broken one, and says nothing migrate could
// judge (until the unknown-role check it fell into rolesStrangers, "two
// migrations": TestResolveUnknownRole).
func knownRole(role string) bool {
	return role == "" || role == transport.RoleSend.String() || role == transport.RoleReceive.String()
}

// unknownSide is which side of e (rolesUnknown) reports the role this
// migrate does not know, and that role: the source's if both do.
func (e *errRoles) unknownSide() (which, role string) {
	if !knownRole(e.src) {
		return "source", e.src
	}
	return "destination", e.dst
}

// sourceArrivedBesideNone reports whether s and d, a side in the wrong
// role beside one in none, are left to plan as before the role check:
// only without an id (migrate -resolve), a receiver at the source's
// socket whose migration is over and which runs the guest
// (api.SideRunning), beside a destination VMM that answered and takes
// part in no migration (api.SideNone). Neither VMM at the job's sockets
// holds a paused copy waiting for a decision, and plan moves nothing
// ("the guest runs on the source", no step).
// It is the honest state of a job whose migrate failed before its
// migrate-send, when the guest came to the source by migration: a VMM
// reports "receive" until its next migrate-send.
//
// Still refused: that receiver beside a destination that does not
// answer (a VMM that replaced this job's source may stand at its
// socket, and the destination may hold the guest, handover-unknown:
// before the role check migrate said the guest runs on the source,
// exit 0), one that waits for a decision or holds none (handover-unknown,
// migrating, postcopy-broken, discarded, failed), and a sender at the
// destination's socket (it may have sent this job's guest on, or be a
// stranger: nothing here tells). With an id (migrate's own run) a VMM
// that reports it in the wrong role reused it: always refused.
func sourceArrivedBesideNone(s, d api.ResolveResult, id string) bool {
	return id == "" && s.Role == transport.RoleReceive.String() && s.Side == api.SideRunning &&
		d.Role == "" && d.Side == api.SideNone
}

// oneName reports whether s and d name one migration: the same id, or
// both none and the same tag fingerprint (a well-formed one: tagText).
// Two sides that name none are not one migration's by anything they say.
func oneName(s, d api.ResolveResult) bool {
	if s.ID != "" || d.ID != "" {
		return s.ID == d.ID
	}
	return s.TagFingerprint != "" && s.TagFingerprint == d.TagFingerprint && tagText(s.TagFingerprint)
}

// advice is what manual tells the operator beside e: why neither side
// is moved, what this resolve did before it stopped (done, actsDone's:
// "Nothing was moved." where nothing took or may have), and what to
// find out or run; never a command to a VMM (rolesStrangers has
// manual's text of two migrations instead). Until
// TestRolesAdviceSaysActsDone it said "Nothing was moved" after a
// look's acts had taken (a destination discarded before its source's
// resume was answered in the wrong role).
func (e *errRoles) advice(src, dst, done string) string {
	switch e.trouble {
	case rolesSwapped:
		return fmt.Sprintf(`The VMM at this job's source socket %s receives in migration %s, and the one at its destination socket %s sends
in it: the job names the two sides the wrong way round (or each VMM was started at the other's socket).
%s
Resolve that migration with a job whose source control socket is %s and whose destination control socket is %s:
    migrate -resolve -config JOB
`, shellArg(src), e.name, shellArg(dst), done, shellArg(dst), shellArg(src))
	case rolesShared:
		return fmt.Sprintf(`The VMMs at both of this job's sockets (%s, %s) report role %.20q in migration %s: a migration has one source
and one destination, so that name was given to two migrations (reused by hand), and nothing here says which VMM holds
which copy, or whose partner is where.
%s
Move neither side further on what this job shows. Find out from both hosts which VMM sent the guest to which and whether
it ran anywhere since; resume, discard or quit by hand only the side that must, right after its migrate-status shows it
still stands as it does now.
`, shellArg(src), shellArg(dst), e.src, e.name, done)
	}
	if e.trouble == rolesUnknown {
		which, role := e.unknownSide()
		sock := map[string]string{"source": src, "destination": dst}[which]
		return fmt.Sprintf(`The VMM at this job's %s socket %s reports role %.20q in migration %s, which this migrate does not know:
it knows %q and %q only (that VMM may be newer than this migrate, or broken).
%s
Nothing here says which copy of the guest it holds. Resolve with a migrate that knows that role, or find out from its
host what it holds before acting by hand.
`, which, shellArg(sock), role, e.name, transport.RoleSend, transport.RoleReceive, done)
	}
	which, sock, role, want := "source", src, e.src, "sends"
	if role == "" {
		which, sock, role, want = "destination", dst, e.dst, "receives"
	}
	return fmt.Sprintf(`The VMM at this job's %s socket %s reports role %.20q in migration %s, where this job's %s %s, and the VMM at
the other socket takes no part in that migration: neither is this job's side of it.
%s
If the job names its sockets the wrong way round, resolve with the two swapped; otherwise find out where that
migration's other side is before acting by hand.
`, which, shellArg(sock), role, e.name, which, want, done)
}

// rolesPair is rolesPair for r's migration (r.id), recording for manual
// what it found: r.mismatch for two migrations told apart by name, else
// r.roles.
func (r *resolver) rolesPair(s, d api.ResolveResult) error {
	err := rolesPair(s, d, r.id)
	var e *errRoles
	switch {
	case !errors.As(err, &e):
	case e.trouble == rolesStrangers:
		r.mismatch = true
	default:
		if e.trouble == rolesUnknown {
			e.sock = r.src
			if which, _ := e.unknownSide(); which == "destination" {
				e.sock = r.dst
			}
		}
		r.roles = e
	}
	return err
}

// errNotSource is sourceSends's error: the VMM at a job's source socket
// (sock) names the migration a caller would act on as its source's, in
// a role other than send (res, its answer). It is sent nothing.
type errNotSource struct {
	sock string
	res  api.ResolveResult
}

func (e *errNotSource) Error() string {
	name := migrationText(e.res.ID, e.res.TagFingerprint)
	switch e.res.Role {
	case transport.RoleReceive.String():
		return fmt.Sprintf("the VMM at %s receives in migration %s (%s): it is not that migration's source, and a receiver "+
			"may hold the guest's newest copy, so it is left alone", e.sock, name, e.res.Side)
	case "":
		return fmt.Sprintf("the VMM at %s says %s in migration %s but no role, as no VMM that took part in a migration does: "+
			"it is left alone", e.sock, e.res.Side, name)
	}
	return fmt.Sprintf("the VMM at %s reports role %.20q, which this migrate does not know (in migration %s, %s): "+
		"it is left alone", e.sock, e.res.Role, name, e.res.Side)
}

// sourceSends is the check of res, the answer of the VMM at a job's
// source socket sock that names the migration a caller would act on as
// that migration's source (quitSource; resolve's verdict source after
// the source's resume): nil when it reports role send, else an
// *errNotSource, and the caller sends it nothing. A receiver of that
// migration (a job whose sockets are written the wrong way round, an
// id reused by hand) may hold the newest copy of a guest still being
// recovered: post-copy's destination holds the only copy that ran.
// Every VMM of this repository reports its role with its side in every
// migrate-resolve answer, whatever its control version (ResolveResult
// has carried it from the first), so no version is spared the check;
// one that reports a side of a migration and no role misreports. Before
// the check (TestQuitSourceOnlyASender, TestResolveAfterResumeOnlyASender)
// a receiver that said migrated or postcopy-broken there was quit, and
// one that ran after the source's resume was taken for that source.
func sourceSends(sock string, res api.ResolveResult) error {
	if res.Role == transport.RoleSend.String() {
		return nil
	}
	return &errNotSource{sock: sock, res: res}
}

// statusSends is sourceSends for st, the migrate-status of the VMM at a
// job's source socket sock that reports the migration follow follows
// (its id): nil when that VMM sends in it. A VMM that reports the id in
// another role (one started at the socket that received a migration
// under a reused id) is not the source followed: follow takes none of
// its progress or report for the source's and sends it no cancel
// (TestRunFollowsOnlyASender: before, Ctrl-C's migrate-cancel went to
// it, and its end was reported as the source's).
func statusSends(sock string, st api.Migration) error {
	return sourceSends(sock, api.ResolveResult{Role: st.Role, Side: st.Side, ID: st.ID, TagFingerprint: st.TagFingerprint})
}

// errNotDestination is statusReceives's error: the VMM at a job's
// destination socket (sock) names the migration a caller waits on, in
// a role other than receive (st, its migrate-status). Its end is not
// the destination's, and its report is not taken.
type errNotDestination struct {
	sock string
	st   api.Migration
}

func (e *errNotDestination) Error() string {
	name := migrationText(e.st.ID, e.st.TagFingerprint)
	switch e.st.Role {
	case transport.RoleSend.String():
		return fmt.Sprintf("the VMM at %s sends in migration %s (%s): it is not that migration's destination, so its end "+
			"is not the destination's", e.sock, name, e.st.Side)
	case "":
		return fmt.Sprintf("the VMM at %s says %s in migration %s but no role, as no VMM that took part in a migration does: "+
			"its end is not taken for the destination's", e.sock, e.st.Side, name)
	}
	return fmt.Sprintf("the VMM at %s reports role %.20q, which this migrate does not know (in migration %s, %s): "+
		"its end is not taken for the destination's", e.sock, e.st.Role, name, e.st.Side)
}

// statusReceives is statusSends for the destination: st, the
// migrate-status of the VMM at a job's destination socket sock that
// reports the migration a caller waits on (finishCompleted's waitDone),
// must report role receive in it; else an *errNotDestination. A VMM at
// that socket that reports the id as its sender (one started there that
// sent a migration under a reused id) and running did not receive the
// guest: until TestFinishCompletedOnlyAReceiver its report was taken for
// the destination's, and the run said the guest runs there.
func statusReceives(sock string, st api.Migration) error {
	if st.Role == transport.RoleReceive.String() {
		return nil
	}
	return &errNotDestination{sock: sock, st: st}
}

// errUnnamedRunning is quitSource's error for the VMM at a job's source
// socket (sock) that runs a guest as the sender of a migration (res,
// its answer) where the caller names the migration it resolves neither
// by an id nor by a tag fingerprint that VMM reports (that migration
// has no id, and one of the two VMMs is older than api.TagsReported or
// the destination reports no fingerprint): every migration matches, so
// nothing says that VMM is that migration's source, resumed beside
// its destination, rather than one running a guest of its own. It is
// not quit, and migrate says BOTH run only of a source it can name
// (errBothRun).
type errUnnamedRunning struct {
	sock string
	res  api.ResolveResult
}

func (e *errUnnamedRunning) Error() string {
	return fmt.Sprintf("the VMM at %s runs a guest as the sender of a migration, id %s, and nothing here tells that migration "+
		"apart from the one whose guest the destination runs (that one has no id, and the two VMMs report no tag "+
		"fingerprint to compare: one of them is older than control version %d): it is not quit, left alone. "+
		"If it is that migration's source, both run the guest: find out from its host what it runs before stopping either",
		e.sock, idText(e.res.ID), api.TagsReported)
}
