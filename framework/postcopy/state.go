package postcopy

import "fmt"

// State is what the destination holds of one guest page. 0 is invalid.
type State uint8

const (
	stateInvalid State = iota
	Absent             // no valid copy here: a hole, or dirtied on the source after it was sent
	Requested          // faulted and asked for over the network; a thread may wait on it
	ZeroKnown          // a zero or free run said it is zero: a fault is resolved locally with ZEROPAGE
	Landed             // its final data is completely in the memfd (written by the transport through its own mapping)
	Placed             // the guest owns it: mapped (ZEROPAGE, CONTINUE, COPY) or, after Settle, readable without userfaultfd
	numStates
)

var stateNames = [numStates]string{"invalid", "absent", "requested", "zero-known", "landed", "placed"}

func (s State) String() string {
	if s < numStates {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// Event is what happens to a page. 0 is invalid.
type Event uint8

const (
	eventInvalid Event = iota
	Fault              // a thread faulted on it (MISSING or MINOR: the table treats both alike)
	LandedRun          // the transport wrote its data completely into the memfd
	ZeroRun            // a zero or free run covers it
	Dirtied            // dirtied on the source before the switch: the copy here is stale
	Settle             // post-copy ends: leave every page readable without userfaultfd
	Reconnect          // the connection to the source was re-established: requests in flight were lost
	numEvents
)

var eventNames = [numEvents]string{"invalid", "fault", "landed", "zero", "dirtied", "settle", "reconnect"}

func (e Event) String() string {
	if e < numEvents {
		return eventNames[e]
	}
	return fmt.Sprintf("event(%d)", uint8(e))
}

// Action is what the service does for a transition. 0 is invalid.
type Action uint8

const (
	actionInvalid Action = iota
	None                 // nothing
	Request              // ask the source for the page on the urgent path
	Zero                 // place a zero page (ZEROPAGE), waking waiters
	Continue             // map the landed page (CONTINUE), waking waiters
	Wake                 // wake waiters: the page is already placed
	Discard              // drop whatever the memfd holds for the page, so that it reads as zero
	numActions
)

var actionNames = [numActions]string{"invalid", "none", "request", "zero", "continue", "wake", "discard"}

func (a Action) String() string {
	if a < numActions {
		return actionNames[a]
	}
	return fmt.Sprintf("action(%d)", uint8(a))
}

// transition is one cell of the table; next == stateInvalid means the
// event is not allowed in that state.
type transition struct {
	next State
	act  Action
}

// table is the page-state machine, the only place transitions are
// decided (diagram in doc.go). Rows are states, columns events.
var table = [numStates][numEvents]transition{
	Absent: {
		Fault:     {Requested, Request},
		LandedRun: {Landed, None},
		ZeroRun:   {ZeroKnown, None},
		Dirtied:   {Absent, None},
		Reconnect: {Absent, None},
		// Settle: not allowed, the page never arrived.
	},
	Requested: {
		Fault:     {Requested, None}, // already in flight: never asked twice
		LandedRun: {Placed, Continue},
		ZeroRun:   {Placed, Zero},       // the zero run overtook the answer: resolved locally
		Reconnect: {Requested, Request}, // the request or its answer may be lost: ask again
		// Dirtied: not allowed, dirty runs come before the switch, faults after.
		// Settle: not allowed, the answer has not arrived.
	},
	ZeroKnown: {
		Fault:     {Placed, Zero},
		LandedRun: {Landed, None}, // the later run wins
		ZeroRun:   {ZeroKnown, None},
		Dirtied:   {Absent, None},
		Settle:    {Placed, Discard}, // a hole reads as zero once unregistered
		Reconnect: {ZeroKnown, None},
	},
	Landed: {
		Fault:     {Placed, Continue},
		LandedRun: {Landed, None},
		ZeroRun:   {ZeroKnown, None}, // the later run wins; the memfd still holds the old data
		Dirtied:   {Absent, None},
		Settle:    {Placed, None}, // the memfd holds it; unregistered, it maps normally
		Reconnect: {Landed, None},
	},
	Placed: {
		Fault:     {Placed, Wake}, // raced with the placement, or the VMM dropped its mapping (Placer.Wake)
		Settle:    {Placed, None},
		Reconnect: {Placed, None},
		// LandedRun, ZeroRun: not allowed, the transport wrote (or would
		// write) a page the guest already owns. Dirtied: not allowed.
	},
}

// step returns the transition for event e in state s.
func step(s State, e Event) (transition, error) {
	if s == stateInvalid || s >= numStates || e == eventInvalid || e >= numEvents {
		return transition{}, fmt.Errorf("%w: %v in %v", ErrTransition, e, s)
	}
	t := table[s][e]
	if t.next == stateInvalid {
		return transition{}, fmt.Errorf("%w: %v in state %v", ErrTransition, e, s)
	}
	return t, nil
}
