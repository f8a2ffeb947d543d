package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ferryvm/ferry/framework/hint"
)

// What a provider did, told truthfully (issue 13: a provider that hung
// past every deadline used to be reported "ok ... requests_late: 0").
//
//	request ─► answered by its deadline ............ on time
//	        ─► ended by its deadline (no answer) ... hung
//	        ─► still running past its deadline
//	           when Send ended ..................... hung
//	        ─► cut short by a sync or Send's end,
//	           before its deadline ................. cancelled (no verdict)
//	        ─► answered on its own, after it ....... late
//	        ─► process gone ........................ crashed (exit status, last error line)
//
// Status is the worst of what happened: crashed, not-supported and
// failed stop a provider (or are set by the session when it could not
// start); otherwise hung, then late, then ok. Counts stay in their
// fields whatever the status.

// HintStats is what one provider contributed to a migration.
type HintStats struct {
	Name    string `json:"name"`
	Meaning string `json:"meaning"`
	// Status: ok, late, hung, crashed, not-supported, failed: <reason>.
	Status string `json:"status"`
	// Stage is where a provider that is not ok went wrong: "start"
	// (process, Info, Schema, its block), "configure" or "hints".
	Stage    string `json:"stage,omitempty"`
	Requests int    `json:"requests"`
	Ranges   uint64 `json:"ranges"`
	Skipped  uint64 `json:"pages_skipped"`  // pages sent as zero runs thanks to it
	Stale    uint64 `json:"ranges_stale"`   // arrived after a later dirty sync
	Invalid  uint64 `json:"ranges_invalid"` // outside RAM, empty or overflowing
	Wrong    uint64 `json:"pages_wrong"`    // "zero" pages that held data and were not written since the request's dirty sync: sent anyway; a lower bound (sender.sync)
	Late     int    `json:"requests_late"`  // requests answered on their own, after their deadline
	Hung     int    `json:"requests_hung"`  // requests not answered by their deadline: ended by it, or never
	// Cancelled counts requests cut short before their deadline by a
	// later dirty sync or by the migration's end: no verdict either way.
	Cancelled int `json:"requests_cancelled"`
	// SlowestMS is the longest request, answered or not.
	SlowestMS int64 `json:"slowest_ms"`
	// DeadlineMS is the deadline of each request.
	DeadlineMS int64 `json:"deadline_ms,omitempty"`
	// ExitStatus and LastError say how a crashed provider's process
	// ended: "exit status 3", and the last line it logged at level
	// ERROR (or its panic).
	ExitStatus string `json:"exit_status,omitempty"`
	LastError  string `json:"last_error,omitempty"`
}

// Hint statuses (HintStats.Status), besides "failed: <reason>".
const (
	HintOK           = "ok"
	HintLate         = "late"
	HintHung         = "hung"
	HintCrashed      = "crashed"
	HintNotSupported = "not-supported"
)

// Stages (HintStats.Stage).
const (
	StageStart     = "start"
	StageConfigure = "configure"
	StageHints     = "hints"
)

// lateSlack is how far past its deadline an answer may end and still be
// on time (the end marker's own trip).
const lateSlack = 10 * time.Millisecond

// deadline is provider i's per-request deadline.
func (h *hinter) deadline(i int) time.Duration {
	if d := h.srcs[i].Deadline; d > 0 {
		return d
	}
	return 300 * time.Millisecond
}

// requestEnded counts how the request b ends ended: on time, hung (ended
// by its deadline) or late (answered after it); errors go to ended.
func (h *hinter) requestEnded(b hintBatch) {
	st := &h.stats[b.src]
	st.SlowestMS = max(st.SlowestMS, b.took.Milliseconds())
	switch {
	case errors.Is(b.err, context.DeadlineExceeded):
		st.Hung++
		if st.Hung == 1 {
			h.log("hint provider did not answer by its deadline", "provider", h.srcs[b.src].Name,
				"deadline", h.deadline(b.src).String(), "generation", b.gen)
		}
	case errors.Is(b.err, context.Canceled):
		st.Cancelled++
	case b.err == nil && b.took > h.deadline(b.src)+lateSlack:
		st.Late++
	}
	h.ended(b.src, b.err)
}

// ended classifies how a request ended.
func (h *hinter) ended(i int, err error) {
	st := &h.stats[i]
	switch {
	case err == nil, errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
	case errors.Is(err, hint.ErrPluginGone):
		if !h.dead[i] {
			h.log("hint provider crashed; no more hints from it in this migration", "provider", h.srcs[i].Name, "err", err)
		}
		h.dead[i], st.Status, st.Stage = true, HintCrashed, StageHints
		var ee *hint.ExitError
		if errors.As(err, &ee) {
			st.ExitStatus, st.LastError = ee.Status, ee.LastError
		}
	case errors.Is(err, hint.ErrNotSupported):
		if !h.dead[i] {
			h.log("hint provider not supported here", "provider", h.srcs[i].Name, "err", err)
		}
		h.dead[i], st.Status, st.Stage = true, HintNotSupported, StageHints
	default:
		if st.Status == HintOK {
			st.Status, st.Stage = fmt.Sprintf("failed: %v", err), StageHints
			h.log("hint request failed; its hints are lost", "provider", h.srcs[i].Name, "err", err)
		}
	}
}

// finish collects the answers of the calls still running (collect),
// counts a call that is still running past its deadline as hung, and sets
// each provider's status from its counts; Send calls it once, at the end.
func (h *hinter) finish() []HintStats {
	h.collect()
	close(h.over) // the calls still running end without being read
	now := time.Now()
	for i := range h.stats {
		st := &h.stats[i]
		if c := h.calls[i]; c.running && !h.dead[i] && !now.Before(c.deadline) {
			st.Hung++
			st.SlowestMS = max(st.SlowestMS, h.deadline(i).Milliseconds())
		}
		if st.Status != HintOK {
			continue
		}
		switch {
		case st.Hung > 0:
			st.Status, st.Stage = HintHung, StageHints
		case st.Late > 0:
			st.Status, st.Stage = HintLate, StageHints
		}
	}
	return h.stats
}
