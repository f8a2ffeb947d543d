package main

import (
	"errors"
	"fmt"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/vmm/api"
)

// Pairing (pair): what makes sure a look at the job's two sockets shows
// the two sides of one migration, by id, and without one by tag
// fingerprint (tagsPair, helloless); how an act names that migration
// (actName); and what is said of a VMM that is left alone because it
// takes part in another migration, or in the wrong role (leftAlone,
// leftAloneInRole).

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
	if err := r.pairLook(s, d); err != nil {
		return r.stopped(err)
	}
	return nil
}

// errStopped is why a resolve found the two sides not to be one
// migration's (pair; wrongRole's roles), and what that means for its
// acts: where none took or may have (actsDone's "Nothing was moved."),
// neither side is moved; else no further act is sent, and those acts
// stand (actsDone, in manual's text, says which). Until
// TestRolesAdviceSaysActsDone's error check, each such error said
// "neither side is moved" also after a discard had taken. What it
// cannot say: what an act that may have taken did.
type errStopped struct {
	err   error
	acted bool // an act of this resolve took or may have before err was found
}

func (e *errStopped) Error() string {
	if e.acted {
		return e.err.Error() + ": no further act is sent (an earlier act of this resolve took or may have)"
	}
	return e.err.Error() + ": neither side is moved"
}

func (e *errStopped) Unwrap() error { return e.err }

// stopped is err, found after the acts r recorded, as an *errStopped.
func (r *resolver) stopped(err error) error {
	acted := false
	for _, s := range r.rec.steps {
		acted = acted || mayHaveMoved(s)
	}
	return &errStopped{err: err, acted: acted}
}

// pairLook is pair's check of one look, its error without what it
// means for the acts (stopped adds that).
func (r *resolver) pairLook(s, d *api.ResolveResult) error {
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
			"neither is the other's partner", s.ID, d.ID)
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
		return false, fmt.Errorf("a VMM reports a malformed tag fingerprint (source %.20q, destination %.20q)",
			s.TagFingerprint, d.TagFingerprint) // at most 20 runes of each, quoted
	case misreport(s, d) != nil:
		return false, misreport(s, d)
	case s.TagFingerprint == d.TagFingerprint:
		return false, nil
	case s.Side == api.SideMigrating && (s.TagFingerprint == "" || d.TagFingerprint == "") &&
		(d.Side == api.SideMigrating || d.Side == api.SideFailed):
		return false, nil
	}
	return false, fmt.Errorf("the two VMMs report different migrations, both without an id (source %s, destination %s): "+
		"neither is the other's partner", tagPrint(s.TagFingerprint), tagPrint(d.TagFingerprint))
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
			"control version %d, is %s, where only a HELLO leads: neither is the other's partner",
			api.TagsReported, s.Side)
	case s.Control >= api.TagsReported && s.TagFingerprint == "" && dstPastHello[d.Side]:
		return fmt.Errorf("the source reports no tag fingerprint (it sent no HELLO), and the destination, older than "+
			"control version %d, is %s, where only a HELLO leads: neither is the other's partner",
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
