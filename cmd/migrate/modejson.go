package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/ferryvm/ferry/framework/job"
	"github.com/ferryvm/ferry/vmm/api"
)

// What migrate -resolve -json, -start-postcopy -json and -check -json
// print: one JSON object on stdout (resolveAnswer, startPostcopyAnswer,
// checkAnswer; the keys in docs/JOBS.md, "-resolve, -start-postcopy and
// -check with -json"),
// the lines these modes print on stdout without -json going to stderr
// instead. A run's report is report.go's. What neither says: anything
// the VMMs did on their own after migrate's last look.

// The modes, as an answer's mode says them.
const (
	modeResolve       = "resolve"
	modeStartPostcopy = "start-postcopy"
	modeCheck         = "check"
)

// The outcomes of migrate -resolve (resolveAnswer.Outcome): what its
// exit code means.
const (
	outcomeResolved   = "resolved"           // exit 0: the guest runs on the side resolved says, and every act was sent
	outcomeNothing    = "nothing-to-resolve" // exit 0: no side holds a paused copy waiting for a decision
	outcomeNotDone    = "not-done"           // exit 1: resolved says where the guest runs (or nothing to resolve), but an act was not sent (error says which, and why) or a side is not settled (what to run)
	outcomeUnresolved = "unresolved"         // exit 1: migrate placed the guest on no one side (manual, lost, both): error says why
	outcomeJobRefused = "job-refused"        // exit 2: the job did not parse; nothing was asked
)

// resolveAnswer.Resolved's words beside resolvedBoth: report.Resolved's,
// as conclude writes them.
const (
	resolvedSource      = "source"
	resolvedDestination = "destination"
)

// resolveAnswer is what migrate -resolve -json prints: the outcome
// (with the exit code, what it means), where the guest runs (resolved,
// the run report's words), the acts tried (in order, each with whether
// it reached the VMM and what came of it: actSent.Outcome), each side's last
// answer to a look (the VMM's migrate-resolve query answer, as it gave
// it), and the reason for exit 1 exactly as printed.
type resolveAnswer struct {
	Mode    string `json:"mode"`
	Outcome string `json:"outcome"`
	// Resolved is report.Resolved's: "destination", "source", or
	// resolvedBoth; empty when the guest was placed on no one side.
	Resolved string `json:"resolved,omitempty"`
	resolveSeen
	// Error is each reason for exit 1, as printed (on stderr after
	// "migrate: ", or the stdout line that says it), joined by "; "
	// where there were two.
	Error string `json:"error,omitempty"`
	Exit  int    `json:"exit"`
}

// resolveSeen is what a resolve did and saw (resolveRecord): the
// acts it tried, in order, and each side's last answer to a look, as
// migrate -resolve -json's answer says them.
type resolveSeen struct {
	Steps []actSent `json:"steps,omitempty"`
	// Source and Destination are each side's last answer to a look
	// (side "unreachable" alone, no vm_state: it did not answer); nil when
	// not asked.
	Source      *api.ResolveResult `json:"source,omitempty"`
	Destination *api.ResolveResult `json:"destination,omitempty"`
}

// end fills in a: the steps and looks rec holds, the reasons for exit
// 1 (why: each as printed), the exit code and its outcome (nothing: no
// side held a paused copy waiting for a decision).
func (a resolveAnswer) end(rec *resolveRecord, why []string, nothing bool) resolveAnswer {
	a.Steps, a.Source, a.Destination = rec.steps, rec.src, rec.dst
	a.Error = strings.Join(why, "; ")
	switch {
	case len(why) == 0 && nothing:
		a.Outcome = outcomeNothing
	case len(why) == 0:
		a.Outcome, a.Exit = outcomeResolved, 0
	case nothing || a.Resolved == resolvedSource || a.Resolved == resolvedDestination:
		a.Outcome, a.Exit = outcomeNotDone, 1
	default:
		a.Outcome, a.Exit = outcomeUnresolved, 1
	}
	return a
}

// startPostcopyAnswer is what migrate -start-postcopy -json prints:
// whether the request went to the source's VMM (asked) and whether that
// VMM took it (accepted), with its answer, and the reason for exit 1
// exactly as printed on stderr after "migrate: ".
type startPostcopyAnswer struct {
	Mode string `json:"mode"`
	// ID is the migration asked about (jobMigration's); empty when it
	// found none that is the job's.
	ID string `json:"id,omitempty"`
	// Asked: the request was written to the source's VMM (it may still
	// have failed or been refused). Accepted: that VMM answered it
	// without refusing: the switch is asked for, now (Answer.Requested)
	// or by an earlier call.
	Asked    bool                     `json:"asked"`
	Accepted bool                     `json:"accepted"`
	Answer   *api.StartPostcopyResult `json:"answer,omitempty"`
	Error    string                   `json:"error,omitempty"`
	Exit     int                      `json:"exit"`
}

// writeAnswer prints a mode's answer (resolveAnswer,
// startPostcopyAnswer, checkAnswer) as one JSON object on w.
func writeAnswer(w io.Writer, answer any) {
	json.NewEncoder(w).Encode(answer)
}

// modeMain runs a mode of migrate that answers in JSON (-resolve,
// -start-postcopy, -check) and returns its exit code: work says its lines on
// said (stdout; stderr with asJSON, so that stdout holds the answer
// alone) and its reasons on stderr, and returns its answer, printed as
// one JSON object on stdout with asJSON. The first Ctrl-C or SIGTERM
// ends signalled (work ends at its next wait, saying so); the second
// ends migrate at once, with nothing more said.
func modeMain[A any](asJSON bool, stdout, stderr io.Writer, work func(signalled context.Context, said io.Writer) (A, int)) int {
	said := stdout
	if asJSON {
		said = stderr
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	context.AfterFunc(ctx, stop) // a second signal ends migrate at once
	a, exit := work(ctx, said)
	if asJSON {
		writeAnswer(stdout, a)
	}
	return exit
}

// parseJobFileSaying is parseJobFile, and for a job it refuses also the
// reason: what it printed last on stderr after "migrate: " at the start
// of a line (the line that ends every refusal, refuseJob's, or readJob's
// own), to its end, more than one line where the reason spans them (a
// path with a line break; until TestModeJSONRefusalWhole, the last line
// alone). What it cannot tell apart: a path that holds a line break
// followed by "migrate: " itself.
func parseJobFileSaying(path string, stderr io.Writer) (*job.Job, string) {
	var said bytes.Buffer
	if j := parseJobFile(path, io.MultiWriter(stderr, &said)); j != nil {
		return j, ""
	}
	return nil, lastReason(said.String())
}

// lastReason is the reason a mode printed last in said (what it wrote
// on stderr): what follows the last "migrate: " at the start of a line,
// to its end, more than one line where it spans them; all of said,
// trimmed, where no line starts so. What it cannot tell apart: a reason
// that holds a line break followed by "migrate: " itself.
func lastReason(said string) string {
	text := "\n" + strings.TrimRight(said, "\n")
	i := strings.LastIndex(text, "\nmigrate: ")
	if i < 0 { // none: every refusal ends with one
		return strings.TrimSpace(text)
	}
	return text[i+len("\nmigrate: "):]
}
