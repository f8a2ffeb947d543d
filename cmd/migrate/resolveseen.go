package main

import (
	"cmp"
	"fmt"
	"strings"
	"time"

	"github.com/ferryvm/ferry/vmm/api"
)

// What the resolver remembers across its looks (resolver.sourceRan,
// dstRan, sourceStopped) speaks of one migration: the one of the look
// that showed it (or, for what run saw before resolving, run's own,
// resolver.id). -resolve learns the migration from each look, and the
// VMMs at the job's sockets may take part in another at a later look (a
// VMM started anew at a socket, a socket reused, an id reused by hand):
// what it saw of the first says nothing of the second's copies. So each
// look is checked against the migration the memory is of (remember),
// and where the pairing changed the resolve ends manual, saying so,
// acting on neither migration and printing no resume for either
// (pairingChangedText). Until TestResolveMemoryOfOneMigration, a flag
// set at one look was honoured at every later look: it refused the
// other migration's steps with a reason that was not true of it, and a
// source seen failed in one migration had the destination's resume of
// another offered unconditionally.
//
//	look             key                                   memory
//	run (r.id set)   r.id: pair counts any other as none   always of r.id
//	-resolve         the id both sides report, else their  of the first look that set
//	                 tag fingerprint (tagsPair: equal, or  a flag; a later look of
//	                 one reports none yet)                 another: manual
//	neither side     none: a look that shows no migration  kept, neither checked nor set
//	reports one
//	only VMMs older  the id, and no fingerprint (untold:   taken as of the memory's
//	than api.Tags-   they report none, whatever they did)  migration (of)
//	Reported answer
//
// What it cannot tell: a VMM may report any id and any fingerprint; it
// keeps honest migrations apart, as pair does. dstTook (this job's
// destination was seen in the source's migration) is of the last
// look's migration: a look of another sets it afresh, and ends nothing
// by itself.

// migrationKey names the migration a look paired: its id, and without
// one the tag fingerprint either side reports (tagsPair: the same, or
// one reports none yet). untold: every side that reported a migration
// at that look runs a VMM older than api.TagsReported, which reports no
// fingerprint whatever it did, so the look names no fingerprint: its
// tag "" is not "sent or took no HELLO".
type migrationKey struct {
	id, tag string
	untold  bool
}

// of reports whether a look of k may be of the migration in (the
// memory's, or the last look's): the same id, and the same fingerprint
// unless k's look could not tell one (untold: an older VMM alone
// answered, as when the newer side's VMM exits, a cancelled or failed
// destination or a failed source). An untold look is taken as in's, as
// pair takes two sides that cannot tell their migrations apart
// (saidOlder); until TestResolveMemoryBesideOlderVMM it counted as
// another migration, "no tag fingerprint", and ended the resolve
// manual. A look that reports a fingerprint in is without one (in is
// untold, or of two sides that sent or took no HELLO) is another's.
// What it cannot tell: whether the older VMM that answers is the one
// the memory's look saw; one started anew at that socket in another
// migration without an id is taken as the first's, flags and all (so
// a source seen failed still offers the resume of a handover-unknown
// destination there), as pair takes such a VMM for any partner.
func (k migrationKey) of(in migrationKey) bool {
	switch {
	case k.id != in.id:
		return false
	case k.untold:
		return true
	}
	return k.tag == in.tag && !in.untold
}

// text is k as manual prints it (migrationText).
func (k migrationKey) text() string {
	if k.untold && k.id == "" {
		return "id " + idText("") + ", no tag fingerprint: its VMM is older than control version " + fmt.Sprint(api.TagsReported)
	}
	return migrationText(k.id, k.tag)
}

// sighting is when and how the resolver first saw one of the facts it
// remembers: at which look of this resolve (0: before it, by run), at
// what time, and what said so. The zero sighting: set by a caller
// without saying how (tests).
type sighting struct {
	look int
	at   time.Time
	what string
}

// String is s as manual prints it: what said so, and when.
func (s sighting) String() string {
	switch {
	case s.what == "":
		return "before this resolve"
	case s.look == 0:
		return fmt.Sprintf("%s, at %s, before this resolve", s.what, s.at.Format("15:04:05.000"))
	}
	return fmt.Sprintf("%s, at look %d of this resolve, %s", s.what, s.look, s.at.Format("15:04:05.000"))
}

// memory is what the resolver saw of one migration, across its looks.
type memory struct {
	// in is the migration the flags below were seen in; known once set
	// (a flag set before any look, by run, is of r.id, which every look
	// of run's resolve pairs: the first look's key).
	in    migrationKey
	known bool
	// when each flag was first seen (resolver.sourceRan, dstRan,
	// sourceStopped; the flags themselves stay on resolver).
	sourceRanAt, dstRanAt, stoppedAt sighting
	// changed: a look paired another migration than in while a flag
	// was set (remember); manual says so and offers nothing.
	changed *errPairingChanged
	looks   int // looks taken so far
	// last is the migration of the last look that showed one (lastKnown):
	// where a look shows another, dstTook is of that look alone.
	last      migrationKey
	lastKnown bool
}

// errPairingChanged is remember's refusal: the sides now pair migration
// now, while what the resolver remembers is of migration was.
type errPairingChanged struct {
	was, now migrationKey
	saw      string // what was seen of was (resolver.sawText)
}

func (e *errPairingChanged) Error() string {
	return fmt.Sprintf("the pairing changed under the resolver: migrate saw %s in migration %s, and the two sides now report "+
		"migration %s; what it saw of one says nothing of the other's copies, so neither is acted on", e.saw, e.was.text(), e.now.text())
}

// lookMigration is the migration the look at s and d (paired: pair)
// shows, and false where neither side reports one (unreachable, or a
// VMM holding none). With r.id every look is of r.id: pair counts a side
// of any other as none.
func (r *resolver) lookMigration(s, d api.ResolveResult) (migrationKey, bool) {
	switch {
	case r.id != "":
		return migrationKey{id: r.id}, true
	case s.Role == "" && d.Role == "":
		return migrationKey{}, false
	}
	k := migrationKey{id: cmp.Or(r.srcID, r.dstID)}
	if k.id == "" {
		k.tag = cmp.Or(r.srcTag, r.dstTag)
		k.untold = tagsUntold(s) && tagsUntold(d)
	}
	return k, true
}

// tagsUntold reports whether x, one side's answer, tells no tag
// fingerprint for its VMM's version: it reports no migration (unreachable,
// or none), or runs a VMM older than api.TagsReported.
func tagsUntold(x api.ResolveResult) bool { return x.Role == "" || x.Control < api.TagsReported }

// remembers reports whether the resolver holds a fact of a migration.
func (r *resolver) remembers() bool { return r.sourceRan || r.dstRan || r.sourceStopped }

// remember takes what the look at s and d (paired, before dstSide)
// shows into the resolver's memory, unless that look is of another
// migration than what the memory holds: then it returns why
// (*errPairingChanged, also kept for manual) and changes nothing.
func (r *resolver) remember(s, d api.ResolveResult) error {
	r.seen.looks++
	k, held := r.lookMigration(s, d)
	if !held {
		return nil
	}
	if r.seen.lastKnown && !k.of(r.seen.last) {
		// Seen in the last migration, not this one (pair added this
		// look's): without it manual offers the source's resume "only
		// if the destination host is gone", a host that may never have
		// held this migration (TestResolveDstTookOfOneMigration).
		r.dstTook = s.Role != "" && d.Role != ""
	}
	if !r.seen.lastKnown || !k.untold || !k.of(r.seen.last) { // an untold look keeps the fingerprint the last told
		r.seen.last, r.seen.lastKnown = k, true
	}
	if r.remembers() { // set before any look: run's, of r.id
		r.seen.keep(k)
	}
	if r.remembers() && !k.of(r.seen.in) {
		r.seen.changed = &errPairingChanged{was: r.seen.in, now: k, saw: r.sawText()}
		return r.seen.changed
	}
	saw := func(what string) sighting { return sighting{look: r.seen.looks, at: time.Now(), what: what} }
	switch s.Side {
	case api.SideRunning:
		r.sawSourceRun(saw("the source said running"), k)
	case api.SideFailed:
		r.sawSourceStopped(saw("the source said failed"), k)
	case api.SideMigrated, api.SidePostcopyBroken:
		r.sawDstRun(saw("the source said "+string(s.Side)), k)
	}
	if d.Side == api.SideRunning {
		r.sawDstRun(saw("the destination said running"), k)
	}
	return nil
}

// sawSourceRun records that the source ran the guest in migration k,
// as s showed (the first sighting is kept); likewise sawDstRun for the
// destination and sawSourceStopped for a source that said failed. The
// caller checked that k is the memory's migration (remember), or sets
// the first fact (run, before resolving: k is r.id's).
func (r *resolver) sawSourceRun(s sighting, k migrationKey) {
	if !r.sourceRan {
		r.sourceRan, r.seen.sourceRanAt = true, s
	}
	r.seen.keep(k)
}

func (r *resolver) sawDstRun(s sighting, k migrationKey) {
	if !r.dstRan {
		r.dstRan, r.seen.dstRanAt = true, s
	}
	r.seen.keep(k)
}

func (r *resolver) sawSourceStopped(s sighting, k migrationKey) {
	if !r.sourceStopped {
		r.sourceStopped, r.seen.stoppedAt = true, s
	}
	r.seen.keep(k)
}

// keep makes k, a look's migration, the memory's where it has none
// yet. Once set it stays: a later look remember took as of it (of) may
// tell less (untold), and must not make the next look's fingerprint
// count as another's.
func (m *memory) keep(k migrationKey) {
	if !m.known {
		m.in, m.known = k, true
	}
}

// ranBefore is run's sighting, before resolving, of what.
func ranBefore(what string) sighting { return sighting{at: time.Now(), what: what} }

// sawText lists what the memory holds, for errPairingChanged.
func (r *resolver) sawText() string {
	var saw []string
	if r.sourceRan {
		saw = append(saw, "the source run the guest ("+r.seen.sourceRanAt.String()+")")
	}
	if r.dstRan {
		saw = append(saw, "the guest run on the destination ("+r.seen.dstRanAt.String()+")")
	}
	if r.sourceStopped {
		saw = append(saw, "the source stop before it could resume the guest ("+r.seen.stoppedAt.String()+")")
	}
	return strings.Join(saw, " and ")
}

// pairingChangedText is what manual says where the pairing changed
// under the resolver (memory.changed): no command, since what it saw
// of one migration may not be applied to the other, and a later
// -resolve would see only what the VMMs say then.
func pairingChangedText(e *errPairingChanged, src, dst string) string {
	return fmt.Sprintf(`While migrate looked, the VMMs at this job's sockets (source %s, destination %s) moved from migration %s
to migration %s: a VMM started anew at a socket, or a socket or an id reused. migrate saw %s
in the first; that says nothing of the second's copies, and nothing here says where the first's guest went. Resume,
discard and stop nothing by hand on what this job shows: find out from both hosts which VMM holds which copy of which
guest (migrate-status names the migration a VMM takes part in: its id, and without one its tag_fingerprint). A later
migrate -resolve decides from what the VMMs say then, without what this one saw.
`, src, dst, e.was.text(), e.now.text(), e.saw)
}

// bothRanText is what manual says where the resolver saw the guest run
// on both sides of one migration (sourceRan and dstRan, of seen.in:
// remember), the source last seen at side src and the
// destination at dst: the two copies diverged, and which was seen
// running first (the sightings; when each began to run it cannot tell).
// It prints no command, and not the line that runs migrate -resolve
// again: a later resolve would not know what this one saw, and could
// settle on one copy by what the VMMs say then (telling a
// handover-unknown source migrated beside a running destination, say).
// Until TestManualBothRan, manual said "Never run" of each side, which
// told the operator both copies were unsafe but not what to do.
func (r *resolver) bothRanText(src, dst api.Side) string {
	first, firstAt, then, thenAt := "source", r.seen.sourceRanAt, "destination", r.seen.dstRanAt
	if thenAt.look < firstAt.look || thenAt.look == firstAt.look && thenAt.at.Before(firstAt.at) {
		first, firstAt, then, thenAt = then, thenAt, first, firstAt
	}
	return fmt.Sprintf(`The guest ran on both sides of migration %s after it began, so the two copies diverged.
migrate saw it run on the %s first (%s), then on the %s (%s); it can tell when it saw each run, not when each began to. Each copy went on without what the guest did on the other since.
Ferry will not pick one: nothing here says which copy holds the state the guest's users rely on, so migrate resumes, discards and stops neither, and prints no command for either.
You must decide which copy to keep, and stop the other for good: whatever the guest did on the copy you stop, since the two diverged, is lost. A side that runs stops with its VMM's quit; a handover-unknown one refuses quit, and is given up first with migrate-resolve discard (a destination) or migrated (a source), naming the migration. A handover-unknown copy you keep runs once you resume it (migrate-resolve resume), after the other is stopped.
At migrate's last look the source %s said %s, and the destination %s said %s.
A later migrate -resolve would not know what this one saw, and could settle on one copy by what the VMMs say then: do not run it to settle this.
`, r.seen.in.text(), first, firstAt, then, thenAt, r.src, src, r.dst, dst)
}
