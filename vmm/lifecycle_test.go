package vmm

import (
	"slices"
	"strings"
	"testing"
)

var allStates = []State{StateCreated, StateIncoming, StateRunning, StatePaused, StateStopped,
	StateMigrated, StateHandoverUnknown, StateDiscarded, StatePostcopyBroken}

// TestStateTable pins every allowed transition; all others are refused.
func TestStateTable(t *testing.T) {
	allowed := map[[2]State]bool{
		{StateCreated, StateRunning}:           true,
		{StateIncoming, StatePaused}:           true,
		{StateRunning, StatePaused}:            true,
		{StatePaused, StateRunning}:            true,
		{StatePaused, StateMigrated}:           true,
		{StatePaused, StateHandoverUnknown}:    true,
		{StateHandoverUnknown, StatePaused}:    true,
		{StateHandoverUnknown, StateMigrated}:  true,
		{StateHandoverUnknown, StateDiscarded}: true,
		{StatePaused, StatePostcopyBroken}:     true,
	}
	if len(stateNext) != len(allStates) {
		t.Fatalf("stateNext has %d rows for %d states", len(stateNext), len(allStates))
	}
	for _, from := range append(allStates, "") {
		for _, to := range append(allStates, "") {
			want := allowed[[2]State{from, to}] || (to == StateStopped && from != StateStopped && from != "")
			if got := canMoveState(from, to); got != want {
				t.Errorf("%q → %q: allowed %v, want %v", from, to, got, want)
			}
		}
	}
}

func TestSetStateIf(t *testing.T) {
	v := fakeVM(StateMigrated)
	if moved, err := v.setStateIf(StateMigrated, StateRunning); moved != true || err == nil ||
		!strings.Contains(err.Error(), "migrated → running is not allowed") {
		t.Errorf("migrated → running: %v, %v", moved, err)
	}
	if moved, err := v.setStateIf(StatePaused, StateRunning); moved || err != nil {
		t.Errorf("compare-and-swap from the wrong state: %v, %v", moved, err)
	}
	if st := v.Status().State; st != StateMigrated {
		t.Fatalf("state %s after refused changes, want migrated", st)
	}
	v = fakeVM(StatePaused)
	if moved, err := v.setStateIf(StatePaused, StateHandoverUnknown); !moved || err != nil || v.Status().State != StateHandoverUnknown {
		t.Errorf("paused → handover-unknown: %v, %v, now %s", moved, err, v.Status().State)
	}
	v.Stop()
	if st := v.Status().State; st != StateStopped {
		t.Errorf("state %s after Stop, want stopped", st)
	}
}

// TestRefusals pins which run-state command each state refuses, with
// what.
func TestRefusals(t *testing.T) {
	cmds := []string{"pause", "resume", "quit", "state-save", "state-load"}
	refused := map[State][]string{
		StateMigrated:        {"pause", "resume", "state-save", "state-load"},
		StateHandoverUnknown: cmds,
		StateDiscarded:       {"pause", "resume", "state-save", "state-load"},
		StatePostcopyBroken:  {"pause", "resume", "state-save", "state-load"},
	}
	texts := map[State]string{
		StateMigrated:        "the VM was handed to the destination (state migrated): resume is refused; quit ends this VMM",
		StateHandoverUnknown: "the handover of this VM is unknown (state handover-unknown): resume is refused; run migrate -resolve -config JOB, or migrate-resolve on both sides (docs/HANDOVER.md)",
		StateDiscarded:       "this incoming VM was discarded (the guest runs on the source): resume is refused; quit ends this VMM",
		StatePostcopyBroken: "post-copy of this VM broke (state postcopy-broken): the guest ran on the destination and this copy is older; " +
			"resume is refused, it never runs again here; quit ends this VMM (docs/JOBS.md, Post-copy)",
	}
	for _, st := range allStates {
		for _, cmd := range cmds {
			err := stateRefusal(st, cmd)
			if want := slices.Contains(refused[st], cmd); (err != nil) != want {
				t.Errorf("%s %s: %v, want refused %v", st, cmd, err, want)
			}
		}
		if want, ok := texts[st]; ok {
			if err := stateRefusal(st, "resume"); err == nil || err.Error() != want {
				t.Errorf("%s: %v\nwant %s", st, err, want)
			}
		}
	}
}

// TestResumeRefusedByTableRunsNoVCPU: a resume that the state table
// refuses (a table bug: paused → running taken out of it) fails with
// the vCPUs still parked, for the engine's Resume at COMMIT as for the
// control socket's resume, so that its error means no vCPU ran
// (framework.Target.Resume; the engine then tells the source to run the
// guest on). Before, the gate let the vCPUs go and moveLocked failed
// after it: an error for a guest that ran here.
func TestResumeRefusedByTableRunsNoVCPU(t *testing.T) {
	row := stateNext[StatePaused]
	stateNext[StatePaused] = slices.DeleteFunc(slices.Clone(row), func(s State) bool { return s == StateRunning })
	t.Cleanup(func() { stateNext[StatePaused] = row })
	for _, who := range []string{"engine", "control"} {
		v, _, m := heldDestination(t)
		if err := v.gate.Pause(t.Context()); err != nil { // LoadState's VM: parked
			t.Fatal(err)
		}
		var err error
		if who == "engine" {
			err = m.Resume()
		} else {
			err = v.resume()
		}
		if err == nil || !strings.Contains(err.Error(), "vCPUs stay parked") {
			t.Errorf("%s: Resume refused by the table: %v; want the table's refusal", who, err)
		}
		if !v.gate.Paused() {
			t.Errorf("%s: Resume failed, but the gate let the vCPUs go", who)
		}
		if st := v.Status().State; st != StatePaused {
			t.Errorf("%s: VM %s after the refused Resume, want paused", who, st)
		}
	}
}
