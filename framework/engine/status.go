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

// status is Report.Status for Send's or Receive's error.
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
