package main

import (
	"cmp"
	"errors"

	"github.com/ferryvm/ferry/vmm/api"
)

// What a resolve did and saw, as migrate -resolve -json says it
// (resolveAnswer, modejson.go): the acts it sent, in order, with what
// came of each, and each side's last answer to a look. The resolver
// records into its own (resolver.rec: query, do, cancelDst,
// lastCancel), and quitSource into the one it is handed. What it does
// not hold: an act not sent (to an older VMM: errNotSent, kept as
// resolver.undone), and what a VMM did after its last answer.

// actSent is one act migrate sent a VMM while it resolved: a
// migrate-resolve action (resume, discard, migrated), a quit, or a
// migrate-cancel, with the migration it named and what came back. An
// act not sent (an older VMM's: errNotSent) is not one; the answer's
// error says so.
type actSent struct {
	To         string `json:"to"`  // "source" or "destination"
	Act        string `json:"act"` // api.ResolveResume, ResolveDiscard, ResolveMigrated, actionQuit or "migrate-cancel"
	api.IDArgs        // the migration it named: its id, or its tag fingerprint
	// Side is what a migrate-resolve action's answer says the side is
	// now; empty for quit and migrate-cancel.
	Side api.Side `json:"side,omitempty"`
	// Error is the VMM's refusal, the call's failure, or why a cancel
	// did not take; empty when it took (a quit whose answer was lost as
	// the VMM exited says that loss).
	Error string `json:"error,omitempty"`
}

// resolveRecord collects what resolveAnswer says migrate did and saw:
// the acts sent, and each side's last answer to a look. The zero value
// is ready; a nil one records nothing (a run's quitSource).
type resolveRecord struct {
	steps    []actSent
	src, dst *api.ResolveResult
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

// sent records act, sent to the source (src) or the destination, and
// err, what came of it (nil: it took).
func (rec *resolveRecord) sent(src bool, act string, n api.IDArgs, side api.Side, err error) {
	if rec == nil {
		return
	}
	a := actSent{To: "destination", Act: act, IDArgs: n, Side: side}
	if src {
		a.To = "source"
	}
	if err != nil {
		a.Error = err.Error()
	}
	rec.steps = append(rec.steps, a)
}

// cancelSent records a migrate-cancel the destination's VMM answered
// res (cancelNamed's; a zero one: no answer).
func (rec *resolveRecord) cancelSent(n api.IDArgs, res api.CancelResult) {
	var err error
	if !res.Cancelled {
		err = errors.New(cmp.Or(res.Why, "no answer"))
	}
	rec.sent(false, "migrate-cancel", n, "", err)
}
