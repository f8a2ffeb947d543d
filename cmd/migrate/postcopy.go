package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/job"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/vmm/api"
	"github.com/ferryvm/ferry/vmm/control"
)

// startPostcopyMain is migrate -start-postcopy: read the job, ask its
// source VMM (migrate-start-postcopy) to switch the running migration to
// post-copy now, and say what happened; with asJSON also as one JSON
// object on stdout (startPostcopyAnswer), the line it prints there
// otherwise going to stderr. Only the job's migration: the
// one the source sends (its migrate-status) to the job's destination
// (which reports the same id), named in the request, so a source that
// moved on to another migration after the look refuses it; never one
// without an id (jobMigration). Exit 0 when
// the switch is asked for (now or by an earlier call), 1 when the
// migration is not the job's, or the VMM refused or could not be
// reached, 2 for a job that does not parse.
func startPostcopyMain(path string, asJSON bool, stdout, stderr io.Writer) int {
	return modeMain(asJSON, stdout, stderr, func(signalled context.Context, said io.Writer) (startPostcopyAnswer, int) {
		a := startPostcopyJob(signalled, path, said, stderr)
		return a, a.Exit
	})
}

// startPostcopyJob is startPostcopyMain's work: what it says goes to
// stdout, its reason for exit 1 (also the answer's error) to stderr.
// signalled, done (the first Ctrl-C or SIGTERM), ends the wait for a
// VMM's answer, and the reason says so: a request already written may
// have been taken all the same (asked). Until
// TestStartPostcopyJSONInterrupted the signal killed migrate, -json's
// answer unprinted.
func startPostcopyJob(signalled context.Context, path string, stdout, stderr io.Writer) startPostcopyAnswer {
	a := startPostcopyAnswer{Mode: modeStartPostcopy}
	fail := func(reason string) startPostcopyAnswer {
		if signalled.Err() != nil {
			reason = "interrupted (Ctrl-C or SIGTERM): " + reason
		}
		fmt.Fprintln(stderr, "migrate:", reason)
		a.Error, a.Exit = reason, 1
		return a
	}
	j, refusal := parseJobFileSaying(path, stderr)
	if j == nil {
		a.Error, a.Exit = refusal, 2
		return a
	}
	id, err := jobMigration(signalled, j)
	if err != nil {
		return fail(fmt.Sprintf("start post-copy: nothing was asked: %v", err))
	}
	a.ID = id
	ctx, cancel := context.WithTimeout(signalled, 10*time.Second)
	defer cancel()
	var res api.StartPostcopyResult
	if err := callControl(ctx, j.Source.Control, "migrate-start-postcopy", api.IDArgs{ID: id}, &res); err != nil {
		a.Asked = !control.NotSent(err)
		return fail(fmt.Sprintf("start post-copy on the source %s: %v", j.Source.Control, err))
	}
	a.Asked, a.Accepted, a.Answer = true, true, &res
	fmt.Fprintln(stdout, startPostcopyLine(j.Source.Control, res))
	return a
}

// jobMigration is the id of the migration the job's source sends, once
// the job's destination says it receives that migration: a source that
// sends another job's migration (to another destination) is not this
// job's to switch. A migration without an id is never this job's (the
// migrate driving a job names one, always): the rule is that ids must
// match exactly and "" matches nothing, so no request without an id is
// ever sent. A migration that is not running (ended, or one the source
// receives) is left to the source's own refusal, by its id.
// Its looks end early when ctx ends.
func jobMigration(ctx context.Context, j *job.Job) (string, error) {
	st, err := migrateStatusUnder(ctx, j.Source.Control)
	if err != nil {
		return "", fmt.Errorf("the source %s: %w", j.Source.Control, err)
	}
	if st.ID == "" {
		return "", idlessSwitch(j.Source.Control, st)
	}
	if st.Done || st.Role != transport.RoleSend.String() {
		return st.ID, nil
	}
	d, err := migrateStatusUnder(ctx, j.Destination.Control)
	switch {
	case err != nil:
		return "", fmt.Errorf("the source %s sends migration %q, and this job's destination %s cannot say it receives it: %w",
			j.Source.Control, st.ID, j.Destination.Control, err)
	case d.ID != st.ID || d.Role != transport.RoleReceive.String():
		return "", fmt.Errorf("the source %s sends migration %q, but this job's destination %s takes part in migration %q (%s): "+
			"the source's migration is another job's", j.Source.Control, st.ID, j.Destination.Control, d.ID, d.Role)
	}
	return st.ID, nil
}

// idlessSwitch is jobMigration's refusal for a source at sock that
// sends a migration without an id (st, its migrate-status): a request
// without an id switches whatever the source sends by the time it
// arrives, and the destination's "" proves nothing (two migrations
// started by hand both have it). The request it prints for the operator
// names the migration as every act does (lineName: its tag fingerprint,
// to a VMM that honours it; TestStartPostcopyByHandNamesTag). Where it
// can name none (a fingerprint the source does not report yet, before
// its bulk phase; a malformed one, tagText: no request can name it; one
// to an older VMM) it prints no request (mayPrint), but why and the
// source's migrate-status; before, it printed a request naming nothing.
func idlessSwitch(sock string, st api.Migration) error {
	n := lineName("", st.TagFingerprint, st.Control)
	req := handCmd{sock: sock, cmd: "migrate-start-postcopy", what: "request", args: lineArgs(n), name: n, control: st.Control, answered: true}
	how := "migrate sends no request that names none. If it is this job's, switch it by hand (the request names its " +
		"tag fingerprint: a source that moved on to another migration by then refuses it)"
	next := "Only if it is this job's, switch it by hand, right after its migrate-status still shows that migration."
	switch {
	case mayPrint(req.cmd, n, st.Control, true) == nil:
	case !tagText(st.TagFingerprint) && st.Control >= api.TagsHonoured:
		how = "a request naming none would switch whatever the source sends by the time it arrives (it reports a malformed tag " +
			"fingerprint, which no request can name)"
	case st.Control >= api.TagsHonoured:
		how = "a request naming none would switch whatever the source sends by the time it arrives (it reports no tag " +
			"fingerprint yet: a source does from its bulk phase on)"
		next = "Once it reports one, run migrate -start-postcopy again: it prints a request that names it.\n" + next
	default:
		how = "a request naming none would switch whatever the source sends by the time it arrives"
	}
	return fmt.Errorf("the source %s holds a migration without an id (%s, %s): one started by hand or by a migrate from "+
		"before ids, which nothing shows to be this job's, and %s:\n%s", sock, st.Role, st.Side, how,
		strings.TrimSuffix(req.text(next), "\n"))
}

// startPostcopyLine is what -start-postcopy prints for the source's answer.
func startPostcopyLine(sock string, res api.StartPostcopyResult) string {
	what := "post-copy requested"
	if !res.Requested {
		what = "nothing to do"
	}
	phase := ""
	if res.Phase != "" {
		phase = fmt.Sprintf(" (phase %s)", res.Phase)
	}
	return fmt.Sprintf("%s on the source %s%s: %s", what, sock, phase, res.Message)
}

// postcopyBrokenText says, for status postcopy-broken, where the guest is
// and what not to do (docs/JOBS.md, Post-copy); its quits name the
// migration as name does (its id, or for one without an id its tag
// fingerprint: resolver.printedName), and each is printed only where
// the VMM at its socket checks that name (handCmd, mayPrint): a quit
// naming nothing, or an id to a VMM that did not answer or ignores ids
// in quit, would end whatever VM that VMM holds when it is run (found
// by review: the quit of an unreachable source named nothing where
// neither side had an id). In its place the text says why and prints
// that VMM's migrate-status; for a source that did not answer, to run
// migrate -resolve again once it answers, which prints the quit naming
// the migration (TestPostcopyBrokenQuitsNamed). b.srcHolds: the VMM at
// the source's socket holds a part of this migration, or could not be
// asked; without it (it reports none: a VMM started anew there) the
// text says the source's copy is gone and prints no quit for it.
// b.dstStays: the destination's VMM answered postcopy-broken, so it is
// still up: a reference VMM that could not halt its guest stays, the
// guest frozen, until quit (vmm/halt_failed.go), and one that halted it
// is about to exit; the text prints its quit too (TestPostcopyBrokenDestinationQuit).
func postcopyBrokenText(b brokenSides) string {
	head := `migrate: post-copy broke and could not resume: the guest ran on the destination with pages only the source
held, and the connection did not come back within reconnect_timeout, the destination VMM died, or the
destination could not go on and said so.
`
	dstLine := ""
	if b.dstStays {
		dstLine = `The destination's VMM still answers: its guest is stopped (or, where it could not halt it, frozen on the
pages it lacks) and must never run again; quit ends it (a VMM that could not halt its guest waits for it):
` + b.quit(b.dst, b.dstName, b.dstControl, true)
	}
	if !b.srcHolds {
		return head + fmt.Sprintf(`The guest is lost: the destination %s stopped its vCPUs for good, and the VMM at the source's socket %s
holds no part of this migration (a VMM started anew there): the source's copy is gone with its VMM.
`, b.dst, b.src) + dstLine
	}
	return head + fmt.Sprintf(`The guest is lost: the destination %s stopped its vCPUs for good, and the source %s keeps a paused copy
that is older than what the guest ran on.
Do not resume the source's copy (it refuses to run): the guest would go back in time and its disks and peers
would not. Keep the source VMM only to inspect that copy; quit ends it:
`, b.dst, b.src) + b.quit(b.src, b.srcName, b.srcControl, b.srcAnswered) + dstLine
}

// brokenSides is what postcopyBrokenText says about the two sides.
type brokenSides struct {
	src, dst               string     // control sockets
	srcName, dstName       api.IDArgs // what each quit names
	srcControl, dstControl uint16     // the control version each side's last answer reported
	srcAnswered            bool       // the source's VMM answered the last look (the destination's did where dstStays)
	srcHolds               bool       // the source's VMM holds a part of this migration
	dstStays               bool       // the destination's VMM answered postcopy-broken
	jobFile                string     // for the -resolve to run once the source answers
}

// quit is the quit of the VMM at sock naming n, as printed (handCmd).
func (b brokenSides) quit(sock string, n api.IDArgs, control uint16, answered bool) string {
	next := "Quit it by hand only right after its migrate-status shows this migration there, postcopy-broken."
	if !answered {
		next = fmt.Sprintf("Once it answers, run migrate -resolve -config %s again: it prints the quit where it can name the migration to that VMM.",
			shellArg(b.jobFile))
	}
	return handCmd{sock: sock, cmd: "quit", what: "quit", args: lineArgs(n), name: n, control: control, answered: answered}.text(next)
}

// printPostcopy prints the post-copy part of the report, when the
// migration switched: the source's counts, and the destination's fault
// statistics when its report came back.
func printPostcopy(w io.Writer, r report) {
	if r.Mode != engine.ModePostcopy {
		return
	}
	fmt.Fprintf(w, "mode          postcopy: %d ms from the guest running on the destination to its last page, %d reconnects\n",
		r.PostcopyMS, r.Reconnects)
	fmt.Fprintf(w, "post-copy     %d pages requested by faults, %d pushed in the background\n", r.PagesRequested, r.PagesPushed)
	d := r.Destination
	if d == nil {
		fmt.Fprintln(w, "faults        not known here: the destination's report did not come back")
		return
	}
	fmt.Fprintf(w, "faults        %d requested, %d resolved as zero locally, %d landed before the fault; latency p50 %d us, p99 %d us, max %d us (destination)\n",
		d.PagesRequested, d.PagesZeroLocal, d.PagesLandLocal, d.FaultP50US, d.FaultP99US, d.FaultMaxUS)
	fmt.Fprintf(w, "              over the network: p50 %d us, p99 %d us, max %d us\n", d.FaultNetP50US, d.FaultNetP99US, d.FaultNetMaxUS)
}
