package main

import (
	"cmp"
	"fmt"

	"github.com/ferryvm/ferry/vmm/api"
)

// What a resolve that cannot decide says (manual): why nothing (more)
// was resumed, and which lines the operator may run, each naming the
// migration it speaks of (printedName, lineName). Its longer texts for
// a changed pairing and for a guest seen running on both sides are
// resolveseen.go's; the post-copy-broken text is postcopy.go's.

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
// stop the other, prints no line (bothRanText), and returns that as
// *errBothRan, BOTH first, which migrate reports as resolved both
// (sawBoth). Each line speaks of
// one migration, by its id, and of
// its own two sides only: no resume is offered for a side that takes
// part in another migration than its partner here, and when this job's
// destination was never seen taking part in the source's migration, the
// source's line says so instead of naming that destination (the source
// may have sent the guest elsewhere, where it may run). What it cannot
// know: whether a side that is gone ran the guest; the operator must.
// Each command it prints names the migration, so a VMM that holds
// another one by the time the operator runs it refuses it; where
// nothing names it in a way that VMM checks (mayPrint: no id and that
// side did not answer, migrate -resolve with no id; or an older VMM
// without an id that takes no tag fingerprint), it prints no resume for
// that side but why, and how to learn the migration it holds
// (resumeLine).
func (r *resolver) manual(src, dst api.Side, cause error) error {
	fmt.Fprintf(r.out, `migrate: the handover cannot be resolved from here: source %s, destination %s (%v).
Nothing more was resumed: the guest must run on exactly one side.
`, src, dst, cause)
	if r.roles != nil {
		fmt.Fprint(r.out, r.roles.advice(r.src, r.dst, actsDone(r.rec.steps)))
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
	mid := cmp.Or(r.id, r.srcID, r.dstID)       // the migration the lines speak of: named in each command, too
	theMigration, idNote := "the migration", "" // with no id known (migrate -resolve: neither side reported one)
	if mid != "" {
		theMigration, idNote = "migration "+idText(mid), " (id "+idText(mid)+")"
	}
	if r.sourceRan && r.dstRan { // of one migration (remember)
		fmt.Fprint(r.out, r.bothRanText(src, dst))
		return &errBothRan{src: r.src, dst: r.dst, migration: r.seen.in.text(),
			err: fmt.Errorf("handover unresolved (source %s, destination %s): %w", src, dst, cause)}
	}
	fmt.Fprintf(r.out, `When both control sockets answer again, run:
    migrate -resolve -config %s
`, shellArg(r.jobFile))
	resume := func(sock string, side api.Side) string { return r.resumeLine(sock, side, r.printedName(sock, mid)) }
	switch {
	case r.srcOther || r.sourceStopped && !r.sourceRan:
	case r.dstRan:
		fmt.Fprintf(r.out, `Never run the source %s: migrate saw the guest run on the destination of %s (it said running, or the source said it handed the guest over), so the source's copy is older.
`, r.src, theMigration)
	case r.dstTook:
		fmt.Fprint(r.out, `Only if the destination host is gone for good and the guest never ran there, run the source with:
`+resume(r.src, src))
	default:
		fmt.Fprintf(r.out, `This job's destination %s was never seen taking part in the source's migration%s: the source may have
sent the guest to another destination (another job's, or an earlier VMM at that socket), where it may run.
Only if the VMM that received %s is gone for good and the guest never ran there, run the source with:
%s`, r.dst, idNote, theMigration, resume(r.src, src))
	}
	if r.dstOther {
		return fmt.Errorf("handover unresolved (source %s, destination %s): %w", src, dst, cause) // leftAlone said what to run
	}
	resumeDst := resume(r.dst, dst) + "(a destination that had switched to post-copy refuses unless every page had arrived: it lacks the pages the source held.)\n"
	switch {
	case r.sourceRan:
		fmt.Fprintf(r.out, `Never run the destination %s: migrate saw the source run the guest after the migration began, so the destination's copy is older.
`, r.dst)
	case r.sourceStopped:
		fmt.Fprintf(r.out, `The source said failed: its VM was stopped before it could resume the guest, so it did not run the guest after the pause and cannot run it again. If the destination is handover-unknown in %s, it holds the current copy, perhaps the only one; run it with:
%s`, theMigration, resumeDst)
	default:
		fmt.Fprintf(r.out, `Only if the source of %s is gone for good, the destination is handover-unknown in that migration (its migrate-status names the id), and the source never ran the guest after it paused for the switch-over (a source that said "running" after its migration failed resumed it: the destination's copy is then older), run the destination with:
%s`, theMigration, resumeDst)
	}
	return fmt.Errorf("handover unresolved (source %s, destination %s): %w", src, dst, cause)
}

// resumeLine is manual's resume of the side at sock, which answered its
// last look as side, naming n (printedName): the command, where mayPrint
// allows it, else what handCmd prints in its place. For a side that did
// not answer, what to do instead is a -resolve once it answers, which
// also checks what it holds (TestResolveUnreachableNamesNoUnknownID);
// for one that answered (an older VMM: no id, and no tag
// fingerprint it honours; or one that refuses the id by name), to check
// its migrate-status right before resuming it by hand, and which request
// does (before, it got a resume that named nothing; then, until
// TestNoResumePrintedSaysHow, "resume it by hand" named no request, to
// an operator whose paused copy may be the guest's only one). What
// it cannot do: name the migration of a VMM it could not ask, or of one
// too old to take a name.
func (r *resolver) resumeLine(sock string, side api.Side, n api.IDArgs) string {
	control := r.dstControl
	if sock == r.src {
		control = r.srcControl
	}
	c := handCmd{sock: sock, cmd: "migrate-resolve", what: "resume", name: n, control: control, answered: side != sideUnreachable,
		args: api.ResolveArgs{Action: api.ResolveResume, ID: n.ID, TagFingerprint: n.TagFingerprint}}
	next := "Resume it by hand only right after its migrate-status shows this migration still handover-unknown there: " +
		`the control request migrate-resolve with action "resume" and nothing that names the migration (docs/HANDOVER.md), ` +
		"which resumes whatever handover-unknown migration that VMM holds when it arrives."
	if !c.answered {
		next = fmt.Sprintf("Once it answers, run migrate -resolve -config %s again: it resolves the handover, or prints "+
			"this command naming the migration.", shellArg(r.jobFile))
	}
	return c.text(next)
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
// postcopyBrokenText's quit, jobMigration's migrate-start-postcopy), and
// is printed only where its VMM checks that name (mayPrint: handCmd).
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
