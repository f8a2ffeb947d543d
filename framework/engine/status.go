package engine

import (
	"context"
	"errors"
	"fmt"
)

// Status is how a migration ended, on either side (Report.Status). JSON
// and text carry the name; "" is the zero value and not a status.
type Status string

// Report.Status values, all of them.
const (
	StatusCompleted Status = "completed" // source: RUNNING arrived; destination: the VM runs (an Error: ErrPostcopyCheck)
	StatusFailed    Status = "failed"    // the source runs the VM, the destination never will
	StatusCancelled Status = "cancelled" // as failed, on the caller's request
	// StatusHandoverUnknown: the VM is paused on this side and the other
	// side may run it; resolve it (docs/HANDOVER.md). Never on its own.
	StatusHandoverUnknown Status = "handover-unknown"
	// StatusPostcopyBroken: post-copy could not finish. The VM ran on
	// the destination with pages the source still holds: the source
	// keeps its paused copy and must never resume it; the destination's
	// guest waits on the pages it lacks. See ErrPostcopyBroken.
	StatusPostcopyBroken Status = "postcopy-broken"
)

var statuses = []Status{StatusCompleted, StatusFailed, StatusCancelled, StatusHandoverUnknown, StatusPostcopyBroken}

// Valid reports whether s is one of the Status constants.
func (s Status) Valid() bool { return oneOf(s, statuses) }

// String implements fmt.Stringer.
func (s Status) String() string { return string(s) }

// MarshalText implements encoding.TextMarshaler.
func (s Status) MarshalText() ([]byte, error) { return marshalName(s, statuses, "status") }

// UnmarshalText implements encoding.TextUnmarshaler: a status this
// version does not know is an error, "" the zero value.
func (s *Status) UnmarshalText(b []byte) error { return unmarshalName(s, b, statuses, "status") }

// reportStatus is Report.Status for Send's or Receive's error err, the
// side's handover having ended at ho. A side whose handover ended
// failed acted on it (the source runs its VM again, the destination
// never will), and reports failed (cancelled, on a cancel) whatever err
// wraps: err may wrap an error from outside the engine (a VMM's or a
// transport's, wrapped so that a caller can test for it) that in turn
// wraps one of the engine's sentinels (a VMM that passes on what an
// earlier migration returned, say), and that must not decide how this
// one ended. Before, a source whose SaveState failed with such an error
// wrapping ErrPostcopyCheck, its VM running again, reported completed,
// which a VMM reads as "handed over" (the reference VMM's sideAfter:
// migrated, and migrate then quits it with the guest running in it),
// and one wrapping ErrHandoverUnknown or ErrPostcopyBroken reported
// those; a destination whose LoadState failed so, likewise
// (TestForeignSentinelNotStatus; as pcRecv.halt for Halt's error).
// What it cannot do: in any other handover the sentinels err wraps
// decide (status), a foreign one's too; the engine wraps no foreign
// error there but the cause of a post-copy that broke (pcRecv.broken).
// A cancel before any hold marks such an error as a cancel's all the
// same (heldCtx.cancelled asks reportStatus too), so the side reports
// cancelled (TestCancelledForeignSentinel).
func reportStatus(err error, ho Handover) Status {
	st := status(err)
	if ho != HandoverFailed || st == StatusFailed || st == StatusCancelled {
		return st
	}
	if errors.Is(err, context.Canceled) {
		return StatusCancelled
	}
	return StatusFailed
}

// status is Report.Status for Send's or Receive's error, by the
// engine's sentinels it wraps (reportStatus checks them against the
// handover).
func status(err error) Status {
	switch {
	case err == nil, errors.Is(err, ErrPostcopyCheck):
		return StatusCompleted
	case errors.Is(err, ErrHandoverUnknown):
		return StatusHandoverUnknown
	case errors.Is(err, ErrPostcopyBroken):
		return StatusPostcopyBroken
	case errors.Is(err, context.Canceled):
		return StatusCancelled
	}
	return StatusFailed
}

func oneOf[T comparable](v T, all []T) bool {
	for _, a := range all {
		if a == v {
			return true
		}
	}
	return false
}

// marshalName writes a name-typed enum: one of all, or "" (unset).
func marshalName[T ~string](v T, all []T, what string) ([]byte, error) {
	if v != "" && !oneOf(v, all) {
		return nil, fmt.Errorf("unknown %s %q", what, string(v))
	}
	return []byte(v), nil
}

// unmarshalName reads a name-typed enum: one of all, or "" (unset).
func unmarshalName[T ~string](v *T, b []byte, all []T, what string) error {
	t := T(b)
	if t != "" && !oneOf(t, all) {
		return fmt.Errorf("unknown %s %q", what, b)
	}
	*v = t
	return nil
}
