package postcopy

import (
	"errors"
	"testing"
)

// TestTable pins every cell of the transition table.
func TestTable(t *testing.T) {
	bad := transition{}
	want := map[State]map[Event]transition{
		Absent:    {Fault: {Requested, Request}, LandedRun: {Landed, None}, ZeroRun: {ZeroKnown, None}, Dirtied: {Absent, None}, Settle: bad, Reconnect: {Absent, None}},
		Requested: {Fault: {Requested, None}, LandedRun: {Placed, Continue}, ZeroRun: {Placed, Zero}, Dirtied: bad, Settle: bad, Reconnect: {Requested, Request}},
		ZeroKnown: {Fault: {Placed, Zero}, LandedRun: {Landed, None}, ZeroRun: {ZeroKnown, None}, Dirtied: {Absent, None}, Settle: {Placed, Discard}, Reconnect: {ZeroKnown, None}},
		Landed:    {Fault: {Placed, Continue}, LandedRun: {Landed, None}, ZeroRun: {ZeroKnown, None}, Dirtied: {Absent, None}, Settle: {Placed, None}, Reconnect: {Landed, None}},
		Placed:    {Fault: {Placed, Wake}, LandedRun: bad, ZeroRun: bad, Dirtied: bad, Settle: {Placed, None}, Reconnect: {Placed, None}},
	}
	for s := Absent; s < numStates; s++ {
		for e := Fault; e < numEvents; e++ {
			w := want[s][e]
			got, err := step(s, e)
			if w == bad {
				if !errors.Is(err, ErrTransition) {
					t.Errorf("%v on %v: %v %v, want ErrTransition", e, s, got, err)
				}
				continue
			}
			if err != nil || got != w {
				t.Errorf("%v on %v: %v %v, want %v", e, s, got, err, w)
			}
		}
	}
	if _, err := step(stateInvalid, Fault); !errors.Is(err, ErrTransition) {
		t.Errorf("invalid state accepted: %v", err)
	}
	if _, err := step(Absent, eventInvalid); !errors.Is(err, ErrTransition) {
		t.Errorf("invalid event accepted: %v", err)
	}
}

// TestTableInvariants states the promises the table keeps, independent
// of its exact cells.
func TestTableInvariants(t *testing.T) {
	for s := Absent; s < numStates; s++ {
		for e := Fault; e < numEvents; e++ {
			tr, err := step(s, e)
			if err != nil {
				continue
			}
			if tr.act == Request && s != Absent && !(s == Requested && e == Reconnect) {
				t.Errorf("%v on %v requests: only an absent page goes to the network (again after a reconnect)", e, s)
			}
			if tr.act == Continue && s != Landed && s != Requested {
				t.Errorf("%v on %v continues a page that has not landed", e, s)
			}
			if tr.act == Continue && e != Fault && e != LandedRun {
				t.Errorf("%v on %v continues without a completed landing or a fault on one", e, s)
			}
			if s == Placed && tr.next != Placed {
				t.Errorf("%v takes a placed page back to %v", e, tr.next)
			}
			if e == Dirtied && tr.next != Absent {
				t.Errorf("dirtied %v page becomes %v, not absent: a stale copy could be served", s, tr.next)
			}
		}
	}
}

func TestNames(t *testing.T) {
	if Landed.String() != "landed" || LandedRun.String() != "landed" || Continue.String() != "continue" ||
		State(99).String() != "state(99)" {
		t.Error("names")
	}
}
