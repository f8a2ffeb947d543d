package main

import (
	"cmp"
	"errors"
	"fmt"
	"strings"

	"github.com/ferryvm/ferry/vmm/api"
	"github.com/ferryvm/ferry/vmm/control"
)

// What a resolve did and saw, as migrate -resolve -json says it
// (resolveAnswer, modejson.go) and a run's report (report.Resolve): the
// acts it tried, in order, with what came of each, and each side's last
// answer to a look. The resolver records into its own (resolver.rec:
// query, do, cancelDst, lastCancel), and quitSource into the one it is
// handed. What it does not hold: an act not sent (to an older VMM:
// errNotSent, kept as resolver.undone), and what a VMM did after its
// last answer.

// The outcomes of one act (actSent.Outcome): whether its request
// reached the VMM, and what the VMM said of it. Until
// TestResolveJSONStepOutcome a step had its error alone, and a request
// never written (unreachable) read as one the VMM refused.
const (
	// stepTook: the VMM answered that it did it: a migrate-resolve
	// action's answer is the side the act asks for, in the role the side
	// it was sent to takes; migrate-cancel, cancelled; quit, answered.
	stepTook = "took"
	// stepRefused: the VMM answered that it did not (an error, or a
	// cancel it did not apply, saying why): it changed nothing.
	stepRefused = "refused"
	// stepUnconfirmed: the VMM answered a migrate-resolve action without
	// an error, but in another side than the act asks for, or in another
	// role than the side it was sent to takes: no confirmation; what it
	// changed is unknown (TestResolveJSONStepOtherSide).
	stepUnconfirmed = "unconfirmed"
	// stepNoAnswer: the request went out, or may have (the connection
	// was made), and no answer came back: it may have taken effect (a
	// quit whose VMM exited before it answered, most often).
	stepNoAnswer = "no-answer"
	// stepUnreachable: the request was never written (control.NotSent):
	// the connection failed (no VMM at the socket, or one migrate will
	// not talk to), or the request could not be encoded (an id a VMM
	// reported, too long for a control line): the VMM got nothing and
	// did nothing.
	stepUnreachable = "unreachable"
)

// actSent is one act migrate tried on a VMM while it resolved: a
// migrate-resolve action (resume, discard, migrated), a quit, or a
// migrate-cancel, with the migration it named and what came of it
// (Outcome), also where its request never reached the VMM. An act
// migrate chose not to send (an older VMM's: errNotSent) is not one;
// the answer's error says so.
type actSent struct {
	To         string `json:"to"`  // "source" or "destination"
	Act        string `json:"act"` // api.ResolveResume, ResolveDiscard, ResolveMigrated, actionQuit or "migrate-cancel"
	api.IDArgs        // the migration it named: its id, or its tag fingerprint
	// Side is what a migrate-resolve action's answer says the side is
	// now; empty for quit and migrate-cancel, and without an answer.
	Side api.Side `json:"side,omitempty"`
	// Outcome is stepTook, stepRefused, stepUnconfirmed, stepNoAnswer or
	// stepUnreachable.
	Outcome string `json:"outcome"`
	// Error is the VMM's refusal, the call's failure, why a cancel did
	// not take, or what an unconfirmed answer said; empty when it took.
	Error string `json:"error,omitempty"`
}

// resolveRecord collects what resolveAnswer and a run's report say
// migrate did and saw: the acts tried, each side's last answer to a
// look, and whether a resolve ran at all. The zero value is ready; a
// nil one records nothing (a run's quitSource after a handover that
// needed no resolve).
type resolveRecord struct {
	ran      bool // resolver.resolve began (a run's report: report.Resolve)
	steps    []actSent
	src, dst *api.ResolveResult
}

// seen is what rec holds, as a run's report says it (report.Resolve):
// nil where no resolve ran.
func (rec *resolveRecord) seen() *resolveSeen {
	if rec == nil || !rec.ran {
		return nil
	}
	return &resolveSeen{Steps: rec.steps, Source: rec.src, Destination: rec.dst}
}

// looked records res as the last look of the source (src) or the
// destination.
func (rec *resolveRecord) looked(src bool, res api.ResolveResult) {
	if rec == nil {
		return
	}
	if src {
		rec.src = &res
	} else {
		rec.dst = &res
	}
}

// sent records act, tried on the source (src) or the destination, and
// err, what came of its call (nil: it took). An answer that is no
// confirmation (do's: another side or role) comes as an
// *errUnconfirmed.
func (rec *resolveRecord) sent(src bool, act string, n api.IDArgs, side api.Side, err error) {
	why := ""
	if err != nil {
		why = err.Error()
	}
	rec.add(src, act, n, side, stepOutcome(err), why)
}

// add records one act: its side (src: the source), what it named, the
// side its answer said, its outcome, and why it did not take.
func (rec *resolveRecord) add(src bool, act string, n api.IDArgs, side api.Side, outcome, why string) {
	if rec == nil {
		return
	}
	a := actSent{To: "destination", Act: act, IDArgs: n, Side: side, Outcome: outcome, Error: why}
	if src {
		a.To = "source"
	}
	rec.steps = append(rec.steps, a)
}

// stepOutcome is the outcome of an act whose call came to err (nil: it
// took).
func stepOutcome(err error) string {
	var unconfirmed *errUnconfirmed
	switch {
	case err == nil:
		return stepTook
	case errors.As(err, &unconfirmed):
		return stepUnconfirmed
	case control.NotSent(err):
		return stepUnreachable
	case answered(err):
		return stepRefused
	}
	return stepNoAnswer
}

// cancelSent records a migrate-cancel the destination's VMM answered
// res (a refusal as its Why), or whose call failed with callErr
// (cancelCall's).
func (rec *resolveRecord) cancelSent(n api.IDArgs, res api.CancelResult, callErr error) {
	switch {
	case callErr != nil:
		rec.add(false, "migrate-cancel", n, "", stepOutcome(callErr), callErr.Error())
	case res.Cancelled:
		rec.add(false, "migrate-cancel", n, "", stepTook, "")
	default:
		rec.add(false, "migrate-cancel", n, "", stepRefused, cmp.Or(res.Why, "not cancelled (its VMM gave no reason)"))
	}
}

// mayHaveMoved reports whether act took or may have (unconfirmed:
// answered in another side or role; no-answer), as actsDone counts it.
func mayHaveMoved(act actSent) bool {
	switch act.Outcome {
	case stepTook, stepUnconfirmed, stepNoAnswer:
		return true
	}
	return false
}

// actsDone is what a resolve that stops says it did, from the acts it
// recorded (steps, in order): "Nothing was moved." where none took or
// may have (none was sent, or each was refused or never written), else
// each act that took, or may have (unconfirmed: answered in another
// side or role; no-answer), with its outcome, then "Nothing more was
// moved." What it cannot say: what an act that may have taken did, nor
// what a VMM did on its own.
func actsDone(steps []actSent) string {
	var did []string
	for _, s := range steps {
		switch {
		case s.Outcome == stepTook:
			did = append(did, fmt.Sprintf("%s on the %s took", s.Act, s.To))
		case mayHaveMoved(s):
			did = append(did, fmt.Sprintf("%s on the %s may have taken (%s)", s.Act, s.To, s.Outcome))
		}
	}
	if len(did) == 0 {
		return "Nothing was moved."
	}
	return "This resolve acted: " + strings.Join(did, "; ") + ". Nothing more was moved."
}
