package vmm

import (
	"fmt"
	"slices"

	"github.com/ferryvm/ferry/vmm/api"
)

// The VM's lifecycle: every state, the one table of allowed transitions
// (stateNext) and the one table of control commands each state refuses
// (refusals). The state changes only through setStateIf, a
// compare-and-swap that refuses (logs and returns an error for) a
// transition outside the table; finish's stopped is one of them.
//
//	created ──Run──► running ◄──resume── paused ◄──LoadState── incoming
//	                    │  └────pause──────►│                  (-incoming)
//	                    │                   ├─► migrated          (source: RUNNING came)
//	                    │                   ├─► handover-unknown  (either side)
//	                    │                   └─► postcopy-broken   (source: post-copy could not finish)
//	                    │    handover-unknown ─► paused (resolve resume: then running,
//	                    │                    │          or back on failure)
//	                    │                    ├─► migrated  (resolve migrated, source)
//	                    │                    └─► discarded (resolve discard, destination)
//	every state ──finish (power-off, failure, quit, Stop)──► stopped (final)
//
// Who moves it: Run (created → running), LoadState (incoming → paused),
// pause and resume (running ↔ paused), the end of a migration
// (migrationDone: paused → migrated | handover-unknown) and
// migrate-resolve (handover.go). Commands that would change the run
// state from outside a migration (pause, resume, quit, state-save,
// state-load) are refused in migrated and discarded (quit still ends
// the VMM) and in handover-unknown (quit too: the VM may hold the only
// copy of the guest); migrate-send and migrate-incoming check their own
// preconditions (canMigrate: running; incoming).

// State is where a VM is in its life (the control socket's api.State).
// "" is not a state.
type State = api.State

// The VM states reported by Status, all of them.
const (
	StateCreated State = "created" // built, vCPUs not started
	StateRunning State = "running" // the guest runs
	StatePaused  State = "paused"  // vCPUs parked; the guest resumes where it was
	StateStopped State = "stopped" // ended: powered off, failed or stopped (final)
	// StateIncoming is the state of an incoming VM until LoadState
	// succeeds (incoming.go).
	StateIncoming State = "incoming"
	// StateMigrated: the VM was handed to a migration destination; it
	// stays paused here until quit.
	StateMigrated State = "migrated"
	// StateHandoverUnknown: the VM is paused; the other side of the
	// migration may run it. Only migrate-resolve changes this state.
	StateHandoverUnknown State = "handover-unknown"
	// StateDiscarded: an incoming VM told it will never run
	// (migrate-resolve discard); it stays, paused, until quit.
	StateDiscarded State = "discarded"
	// StatePostcopyBroken: a source whose post-copy could not finish: the
	// guest ran on the destination, so this paused copy is older than
	// what it ran on. It is never resumed; quit ends the VMM.
	StatePostcopyBroken State = "postcopy-broken"
)

// stateNext is the one table of allowed transitions; → stopped is
// allowed from every state but stopped.
var stateNext = map[State][]State{
	StateCreated:         {StateRunning},
	StateIncoming:        {StatePaused},
	StateRunning:         {StatePaused},
	StatePaused:          {StateRunning, StateMigrated, StateHandoverUnknown, StatePostcopyBroken},
	StateHandoverUnknown: {StatePaused, StateMigrated, StateDiscarded},
	StateMigrated:        nil,
	StateDiscarded:       nil,
	StatePostcopyBroken:  nil,
	StateStopped:         nil,
}

// canMoveState reports whether from → to is in the table.
func canMoveState(from, to State) bool {
	next, known := stateNext[from]
	if !known {
		return false
	}
	return (to == StateStopped && from != StateStopped) || slices.Contains(next, to)
}

// refusal is what a state says to a run-state command from outside a
// migration: every command but those in allow is refused with why.
type refusal struct {
	allow []string
	why   func(st State, cmd string) error
}

// refusals is the one table of the control commands each state refuses
// (runlock.go's outside applies it). A VM handed to a destination must
// never run here again; quit still ends it.
var refusals = map[State]refusal{
	StateMigrated: {allow: []string{"quit"}, why: func(_ State, cmd string) error { return errHandedOver(cmd) }},
	StateHandoverUnknown: {why: func(st State, cmd string) error {
		// Paused, and perhaps the only copy of the guest: quit too would lose it.
		return fmt.Errorf("the handover of this VM is unknown (state %s): %s is refused; "+
			"run migrate -resolve -config JOB, or migrate-resolve on both sides (docs/HANDOVER.md)", st, cmd)
	}},
	StatePostcopyBroken: {allow: []string{"quit"}, why: func(st State, cmd string) error {
		return fmt.Errorf("post-copy of this VM broke (state %s): the guest ran on the destination and this copy is older; "+
			"%s is refused, it never runs again here; quit ends this VMM (docs/JOBS.md, Post-copy)", st, cmd)
	}},
	StateDiscarded: {allow: []string{"quit"}, why: func(_ State, cmd string) error {
		return fmt.Errorf("this incoming VM was discarded (the guest runs on the source): %s is refused; quit ends this VMM", cmd)
	}},
}

// errHandedOver refuses run-state changes on a VM that a migration handed
// to its destination (StateMigrated).
func errHandedOver(cmd string) error {
	return fmt.Errorf("the VM was handed to the destination (state %s): %s is refused; quit ends this VMM", StateMigrated, cmd)
}

// stateRefusal is why cmd, a run-state change from outside a migration,
// is refused in state st, or nil.
func stateRefusal(st State, cmd string) error {
	r, ok := refusals[st]
	if !ok || slices.Contains(r.allow, cmd) {
		return nil
	}
	return r.why(st, cmd)
}

// setStateIf moves the VM from `from` to `to` if it is in from (a
// compare-and-swap: false, nil if it was not). A transition outside
// stateNext is a bug: it is logged and refused with an error, and the
// state stays. The caller must not hold v.mu.
func (v *VM) setStateIf(from, to State) (bool, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.state != from {
		return false, nil
	}
	return true, v.moveLocked(to)
}

// moveLocked moves the VM to state to if stateNext allows it; v.mu is held.
func (v *VM) moveLocked(to State) error {
	if !canMoveState(v.state, to) {
		err := fmt.Errorf("vmm bug: VM state %s → %s is not allowed", v.state, to)
		v.log.Error("state change refused", "err", err)
		return err
	}
	v.state = to
	if to == StateRunning {
		v.runs++
	}
	if v.moved != nil {
		close(v.moved)
		v.moved = nil
	}
	return nil
}

// awaitLeaving blocks while the VM is in state st.
func (v *VM) awaitLeaving(st State) {
	for {
		v.mu.Lock()
		if v.state != st {
			v.mu.Unlock()
			return
		}
		if v.moved == nil {
			v.moved = make(chan struct{})
		}
		moved := v.moved
		v.mu.Unlock()
		<-moved
	}
}

// runMark is where the VM's run history stood at one moment (the end of
// a migration): its run generation (VM.runs) and whether it ran then.
type runMark struct {
	runs    uint64
	running bool
}

// runMark returns the VM's run history now.
func (v *VM) runMark() runMark {
	v.mu.Lock()
	defer v.mu.Unlock()
	return runMark{runs: v.runs, running: v.state == StateRunning}
}

// ranSince reports whether the guest ran here at m or after it: it was
// running then, or entered running since (a resume by migrate-resolve
// or by hand). It cannot see a guest that ran elsewhere.
func (v *VM) ranSince(m runMark) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return m.running || v.runs != m.runs
}
