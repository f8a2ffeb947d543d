package engine

import (
	"errors"
	"fmt"
	"sync"
)

// Handover is where one side of a migration stands in handing the VM
// over. Each side moves only along the table in handoverNext, and the
// package doc draws it. 0 is invalid.
type Handover uint8

// Source states.
const (
	HandoverInvalid    Handover = iota
	HandoverLive                // source: pre-copy passes, the VM runs here
	HandoverSwitchover          // source: paused; final pass, state, waiting for LOADED
	HandoverCommitting          // source: COMMIT written (or being written), waiting for RUNNING
	HandoverCompleted           // source: RUNNING arrived; the VM runs on the destination, paused here for good
	HandoverFailed              // either side: gave up; the source runs again, the destination never will

	HandoverWaiting   // destination: waiting for the source to connect
	HandoverReceiving // destination: pages and state arriving
	HandoverLoaded    // destination: state loaded, LOADED sent, waiting for COMMIT
	HandoverRunning   // destination: COMMIT arrived and the vCPUs run

	// HandoverUnknown: the connection ended between COMMIT written
	// (source) or LOADED sent (destination) and RUNNING: this side cannot
	// know whether the other runs the VM. It stays paused and never
	// resumes, discards or exits on its own; see ErrHandoverUnknown.
	HandoverUnknown

	// HandoverPostcopy: COMMIT was answered with RUNNING in post-copy.
	// The VM runs on the destination while the source, paused for good,
	// sends the pages it still owes (on request and in the background).
	// Neither side may resume or discard its copy: each holds pages the
	// other lacks. Both sides pass through it.
	HandoverPostcopy
	// HandoverPostcopyBroken: post-copy stopped before every page
	// arrived and could not be resumed within ReconnectTimeout. The
	// source keeps its paused copy (never resumed on its own); the
	// destination's guest waits on the pages it lacks. See
	// ErrPostcopyBroken.
	HandoverPostcopyBroken
)

var handoverNames = [...]string{
	HandoverInvalid: "invalid", HandoverLive: "live", HandoverSwitchover: "switchover",
	HandoverCommitting: "committing", HandoverCompleted: "completed", HandoverFailed: "failed",
	HandoverWaiting: "waiting", HandoverReceiving: "receiving", HandoverLoaded: "loaded",
	HandoverRunning: "running", HandoverUnknown: "handover-unknown",
	HandoverPostcopy: "postcopy", HandoverPostcopyBroken: "postcopy-broken",
}

// String implements fmt.Stringer.
func (h Handover) String() string {
	if int(h) < len(handoverNames) {
		return handoverNames[h]
	}
	return fmt.Sprintf("handover(%d)", uint8(h))
}

// MarshalText implements encoding.TextMarshaler: JSON carries the name.
func (h Handover) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (h *Handover) UnmarshalText(b []byte) error {
	for i, n := range handoverNames {
		if n == string(b) {
			*h = Handover(i)
			return nil
		}
	}
	return fmt.Errorf("unknown handover state %q", b)
}

// handoverNext is the one table of allowed transitions. Completed,
// Failed, Running and Unknown are final for the engine: what happens to
// an unknown handover is decided outside it (the VMM's migrate-resolve).
var handoverNext = map[Handover][]Handover{
	HandoverLive:       {HandoverSwitchover, HandoverFailed},
	HandoverSwitchover: {HandoverCommitting, HandoverFailed},
	HandoverCommitting: {HandoverCompleted, HandoverPostcopy, HandoverUnknown, HandoverFailed},
	HandoverWaiting:    {HandoverReceiving, HandoverFailed},
	HandoverReceiving:  {HandoverLoaded, HandoverFailed},
	HandoverLoaded:     {HandoverRunning, HandoverPostcopy, HandoverUnknown, HandoverFailed},
	// Post-copy ends completed (source) or running (destination) once
	// every page arrived, or broken; never failed: the VM has run on the
	// destination.
	HandoverPostcopy:       {HandoverCompleted, HandoverRunning, HandoverPostcopyBroken},
	HandoverPostcopyBroken: nil,
	HandoverCompleted:      nil,
	HandoverFailed:         nil,
	HandoverRunning:        nil,
	HandoverUnknown:        nil,
	HandoverInvalid:        nil,
}

// Final reports whether the engine is done with this state.
func (h Handover) Final() bool {
	return h == HandoverCompleted || h == HandoverFailed || h == HandoverRunning || h == HandoverUnknown ||
		h == HandoverPostcopyBroken
}

// canMove reports whether from → to is in the table.
func canMove(from, to Handover) bool {
	for _, n := range handoverNext[from] {
		if n == to {
			return true
		}
	}
	return false
}

// ErrHandoverUnknown is returned (wrapped) by Send and Receive when the
// connection ended inside the handover window: the source wrote COMMIT
// but no RUNNING came back, or the destination sent LOADED and no COMMIT
// (or ABORT) came. The VM is paused on this side and must stay so until
// someone asks both sides and resumes exactly one (docs/HANDOVER.md).
var ErrHandoverUnknown = errors.New("handover unknown: the VM is paused here and may or may not run on the other side")

// ErrPostcopyBroken is returned (wrapped) by Send and Receive when
// post-copy stopped before every page arrived and the transport could
// not be opened again within ReconnectTimeout (or ctx ended). The VM has
// run on the destination: the source's paused copy must never be resumed
// (it is stale), and the destination cannot finish without it. Keep both
// until someone decides; a destination VMM that died lost the VM.
var ErrPostcopyBroken = errors.New("post-copy broken: the VM ran on the destination, which lacks pages this source holds")

// ErrPostcopyCheck is returned (wrapped) by Send and Receive when the
// page-exact check (Options.VerifyPages, a test mode) found pages that
// differed when they arrived in post-copy, and by Receive when its
// transport reported pages landed after every page had arrived (a write
// over a page the guest owned, or a run not guest RAM's: the source
// does not know of it): the VM already ran on the
// destination, so the handover completed all the same. Report.Status is
// StatusCompleted (the destination runs the VM, with those pages; the
// source's copy is paused for good) and Report.Error says what differed.
// Nothing is stopped or resumed for it: the check reports a bug in the
// migration, and either copy is now wrong.
var ErrPostcopyCheck = errors.New("post-copy page check failed")

// handoverState is a Handover that changes only along the table, under
// a lock, so a reader (progress, status) sees a consistent value.
type handoverState struct {
	mu sync.Mutex
	h  Handover
}

// move changes the state; a transition outside the table is a bug in
// the engine and returns an error instead of moving.
func (s *handoverState) move(to Handover) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !canMove(s.h, to) {
		return fmt.Errorf("engine bug: handover %s → %s is not allowed", s.h, to)
	}
	s.h = to
	return nil
}

func (s *handoverState) get() Handover {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.h
}
