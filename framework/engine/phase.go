package engine

import "fmt"

// Phase is what a migration is doing, for progress reports
// (Progress.Phase). It refines the Handover state: setup, bulk and dirty
// happen while the source is live; stop-and-copy and state during its
// switchover; waiting, bulk and state on the destination before LOADED.
// Each side moves only along phaseNext. JSON and text carry the name; ""
// is the zero value and not a phase.
//
//	source:       setup ─► bulk ─► dirty ─┬─► stop-and-copy ─► state ─► [postcopy] ─► done
//	                         └────────────┘  (dirty repeats)
//	destination:  waiting ─► bulk ─► state ─► [postcopy] ─► done
//	either side:  any phase ─► done (the migration ended, however)
type Phase string

// Progress.Phase values, all of them.
const (
	PhaseSetup   Phase = "setup"
	PhaseBulk    Phase = "bulk"
	PhaseDirty   Phase = "dirty"
	PhaseStop    Phase = "stop-and-copy"
	PhaseState   Phase = "state"
	PhaseDone    Phase = "done"
	PhaseWaiting Phase = "waiting" // destination: waiting for pages and state
	// PhasePostcopy: the VM runs on the destination; the pages it still
	// lacks arrive on request and in the background.
	PhasePostcopy Phase = "postcopy"
)

var phases = []Phase{PhaseSetup, PhaseBulk, PhaseDirty, PhaseStop, PhaseState, PhaseDone, PhaseWaiting, PhasePostcopy}

// phaseNext is the one table of allowed phase changes (besides → done,
// allowed from every phase, and staying, as dirty does pass after pass). Bulk → stop-and-copy: a bulk pass that met
// the downtime goal (or max_passes 1); bulk → state: the destination.
var phaseNext = map[Phase][]Phase{
	PhaseSetup:    {PhaseBulk},
	PhaseBulk:     {PhaseDirty, PhaseStop, PhaseState},
	PhaseDirty:    {PhaseStop},
	PhaseStop:     {PhaseState},
	PhaseWaiting:  {PhaseBulk},
	PhaseState:    {PhasePostcopy},
	PhasePostcopy: nil,
	PhaseDone:     nil,
}

// Valid reports whether p is one of the Phase constants.
func (p Phase) Valid() bool { return oneOf(p, phases) }

// String implements fmt.Stringer.
func (p Phase) String() string { return string(p) }

// MarshalText implements encoding.TextMarshaler.
func (p Phase) MarshalText() ([]byte, error) { return marshalName(p, phases, "phase") }

// UnmarshalText implements encoding.TextUnmarshaler: a phase this
// version does not know is an error, "" the zero value.
func (p *Phase) UnmarshalText(b []byte) error { return unmarshalName(p, b, phases, "phase") }

// canPhase reports whether from → to is allowed.
func canPhase(from, to Phase) bool {
	return from.Valid() && (to == PhaseDone || to == from || oneOf(to, phaseNext[from]))
}

// nextPhase returns to if from → to is in the table; a change outside
// it is a bug in the engine: it is logged by the caller and the phase
// stays.
func nextPhase(from, to Phase) (Phase, error) {
	if !canPhase(from, to) {
		return from, fmt.Errorf("engine bug: phase %s → %s is not allowed", from, to)
	}
	return to, nil
}
