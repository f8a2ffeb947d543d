package vmm

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/vmm/api"
	"github.com/ferryvm/ferry/vmm/devices/balloon"
	"github.com/ferryvm/ferry/vmm/vcpu"
)

// fakeVM is a VM without KVM, vCPUs or devices in state st: enough for
// the run lock and the control commands that change the run state (a
// gate with no vCPUs pauses at once).
func fakeVM(st State) *VM {
	return &VM{cfg: Config{Memory: 64 << 20, CPUs: 1}, log: slog.New(slog.DiscardHandler), state: st,
		gate: vcpu.NewGate(), run: newRunLock(), stopped: make(chan struct{}), cpusDone: make(chan struct{})}
}

// takes is a migration's canceller that always takes, after calling f:
// a plain context cancel, for tests that do not run the engine.
func takes(f func()) canceller {
	return func() (bool, bool) { f(); return true, false }
}

// serveFake serves v's control commands on a socket in a temporary
// directory (serveCalls) and returns a function that calls one and
// discards its answer.
func serveFake(t *testing.T, v *VM) func(cmd string, args any) error {
	call := serveCalls(t, v)
	return func(cmd string, args any) error { return call(cmd, args, nil) }
}

// quitStops checks that a quit, answered with err, was accepted and
// stopped v within 5 s; when says when it was sent ("after handover").
func quitStops(t *testing.T, v *VM, when string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("quit %s: %v", when, err)
	}
	select {
	case <-v.stopped:
	case <-time.After(5 * time.Second):
		t.Fatalf("quit %s did not stop the VM", when)
	}
}

// claimFake makes a send migration own v, in phase, as migrate-send does.
func claimFake(t *testing.T, v *VM, mg *migration, phase engine.Phase) *migrationOwner {
	own := claimIn(t, v, mg, transport.RoleSend, "", nil)
	mg.progress(engine.Progress{Phase: phase})
	return own
}

// TestRefusedWhileMigrating: every run-state command is refused with the
// message that names the migration and the way out, through the control
// socket; status and migrate-cancel still answer.
func TestRefusedWhileMigrating(t *testing.T) {
	v := fakeVM(StateRunning)
	call := serveFake(t, v)
	mg := &migration{}
	own := claimFake(t, v, mg, engine.PhaseBulk)
	for _, cmd := range []string{"pause", "resume", "quit", "state-save", "state-load"} {
		var args any
		if strings.HasPrefix(cmd, "state-") {
			args = map[string]string{"path": filepath.Join(t.TempDir(), "blob")}
		}
		err := call(cmd, args)
		want := cmd + ": the VM is migrating (send, phase bulk): " + cmd + " is refused; migrate-cancel is the only way out"
		if err == nil || err.Error() != want {
			t.Errorf("%s while migrating: got %v, want %q", cmd, err, want)
		}
	}
	if err := call("status", nil); err != nil {
		t.Errorf("status while migrating: %v", err)
	}
	if st := v.Status().State; st != StateRunning {
		t.Errorf("state %s after refused commands, want running", st)
	}
	// The in-process API is refused the same way.
	if err := v.Pause(context.Background()); err == nil || !strings.Contains(err.Error(), "pause is refused") {
		t.Errorf("VM.Pause while migrating: %v", err)
	}
	// The owner's own changes go through.
	m := migrationVM{v: v, own: own}
	if err := m.Pause(context.Background()); err != nil {
		t.Fatalf("engine pause: %v", err)
	}
	if err := call("resume", nil); err == nil || !strings.Contains(err.Error(), "phase bulk") {
		t.Errorf("resume after the engine's pause: %v", err)
	}
	if st := v.Status().State; st != StatePaused {
		t.Errorf("state %s after the engine's pause and a refused resume, want paused", st)
	}
	own.release(func() {
		v.setStateIf(StatePaused, StateMigrated)
		mg.finish(engine.Report{Status: "completed"}, api.SideMigrated)
	})
	if err := m.Resume(); !errors.Is(err, errNotOwner) {
		t.Errorf("owner's resume after release: %v, want errNotOwner", err)
	}
}

// TestRefusedAfterHandover: a VM handed to its destination refuses to run
// or be saved again; quit still ends it.
func TestRefusedAfterHandover(t *testing.T) {
	v := fakeVM(StateMigrated)
	call := serveFake(t, v)
	for _, cmd := range []string{"pause", "resume", "state-save"} {
		var args any
		if cmd == "state-save" {
			args = map[string]string{"path": filepath.Join(t.TempDir(), "blob")}
		}
		err := call(cmd, args)
		want := cmd + ": the VM was handed to the destination (state migrated): " + cmd + " is refused; quit ends this VMM"
		if err == nil || err.Error() != want {
			t.Errorf("%s after handover: got %v, want %q", cmd, err, want)
		}
	}
	quitStops(t, v, "after handover", call("quit", nil))
}

// TestClaimWaitsForChange: a run-state change that passed its check
// finishes before a migration can claim the VM, so it can never land
// after the engine's pause; one that comes after the claim is refused.
func TestClaimWaitsForChange(t *testing.T) {
	v := fakeVM(StateRunning)
	inside, finish := make(chan struct{}), make(chan struct{})
	resumed := make(chan error, 1)
	go func() {
		resumed <- v.outside(context.Background(), "resume", func(context.Context) error {
			close(inside)
			<-finish // a resume that passed the check and is slow to act
			return v.resume()
		})
	}()
	<-inside
	claimed := make(chan *migrationOwner, 1)
	mg := &migration{}
	go func() { claimed <- claimFake(t, v, mg, engine.PhaseBulk) }()
	select {
	case <-claimed:
		t.Fatal("a migration claimed the VM while a resume was under way")
	case <-time.After(50 * time.Millisecond):
	}
	close(finish)
	if err := <-resumed; err != nil {
		t.Fatal(err)
	}
	var own *migrationOwner
	select {
	case own = <-claimed:
	case <-time.After(5 * time.Second):
		t.Fatal("claim still waiting after the resume finished")
	}
	defer own.release(nil)
	if err := (migrationVM{v: v, own: own}).Pause(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := v.Resume(); err == nil {
		t.Fatal("a resume after the claim went through")
	}
	if !v.gate.Paused() || v.Status().State != StatePaused {
		t.Fatalf("VM %s (gate paused %v) after the engine's pause", v.Status().State, v.gate.Paused())
	}
}

// TestClaimBounded: a claim waits for a change in progress only as long
// as its context allows, and a second migration is refused.
func TestClaimBounded(t *testing.T) {
	v := fakeVM(StateRunning)
	if err := v.run.lock(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := v.claim(ctx, &migration{}, "send", "", takes(func() {}), func(State) error { return nil }); err == nil {
		t.Fatal("claim succeeded while the run lock was held")
	}
	v.run.unlock()
	mg := &migration{}
	own := claimFake(t, v, mg, "")
	defer own.release(nil)
	_, err := v.claim(context.Background(), &migration{}, "send", "", takes(func() {}), func(State) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "phase starting): migrate-send is refused") {
		t.Fatalf("second claim: %v", err)
	}
}

// TestOwnerDecides is how a command that decides a migration's end
// (migrate-resolve) uses the lock: it finds the owner through the
// migration, runs its change as the owner while everybody else is still
// refused, then releases; afterwards the owner can change nothing.
func TestOwnerDecides(t *testing.T) {
	v := fakeVM(StateRunning)
	mg := &migration{}
	own := claimFake(t, v, mg, engine.PhaseStop)
	if err := (migrationVM{v: v, own: own}).Pause(context.Background()); err != nil {
		t.Fatal(err)
	}
	o := mg.owner()
	if o != own {
		t.Fatal("migration.owner is not the claim's owner")
	}
	if err := v.Resume(); err == nil {
		t.Fatal("resume from outside went through before the decision")
	}
	if err := o.do(context.Background(), func(context.Context) error { return v.resume() }); err != nil {
		t.Fatalf("the owner's decision: %v", err)
	}
	o.release(func() { mg.finish(engine.Report{Status: "failed"}, api.SideRunning) })
	if st := v.Status().State; st != StateRunning {
		t.Fatalf("state %s after the decision to resume here", st)
	}
	if err := o.do(context.Background(), func(context.Context) error { return nil }); !errors.Is(err, errNotOwner) {
		t.Fatalf("owner after release: %v, want errNotOwner", err)
	}
	if err := v.Pause(context.Background()); err != nil {
		t.Fatalf("pause after release: %v", err)
	}
}

// TestRunLockedDecides: a command that decides by itself (how a
// migration whose handover is unknown ends) runs under the run lock and
// sees the owner, if any; control commands wait for it and then see its
// result.
func TestRunLockedDecides(t *testing.T) {
	v := fakeVM(StatePaused)
	entered, decide := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- v.runLocked(context.Background(), func(_ context.Context, owner *migrationOwner) error {
			if owner != nil {
				return errors.New("an owner without a migration")
			}
			close(entered)
			<-decide
			v.mu.Lock()
			v.state = StateMigrated // the decision: the guest runs elsewhere
			v.mu.Unlock()
			return nil
		})
	}()
	<-entered
	resumed := make(chan error, 1)
	go func() { resumed <- v.Resume() }()
	select {
	case err := <-resumed:
		t.Fatalf("resume did not wait for the decision: %v", err)
	case <-time.After(30 * time.Millisecond):
	}
	close(decide)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := <-resumed; err == nil || !strings.Contains(err.Error(), "handed to the destination") {
		t.Fatalf("resume after the decision: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	v.run.lock(context.Background())
	defer v.run.unlock()
	if err := v.runLocked(ctx, func(context.Context, *migrationOwner) error { return nil }); err == nil {
		t.Fatal("runLocked ran while the lock was held")
	}
}

// TestHintByHandRefusedWhileMigrating: hint-start, hint-stop and
// hint-done drive the balloon's hint sessions by hand, and are refused
// while a migration owns the VM (its provider drives them then, and a
// session started or ended by hand cut the provider's short, costing its
// hints); they work again once the migration released the VM. hint-wait
// only watches.
func TestHintByHandRefusedWhileMigrating(t *testing.T) {
	v := fakeVM(StateRunning)
	v.balloon = balloon.New(newGuestRAM(t), nil)
	call := serveFake(t, v)
	mg := &migration{}
	own := claimFake(t, v, mg, engine.PhaseBulk)
	for _, cmd := range []string{"hint-start", "hint-stop", "hint-done"} {
		err := call(cmd, nil)
		want := cmd + ": the VM is migrating (send, phase bulk): " + cmd + " is refused; migrate-cancel is the only way out"
		if err == nil || err.Error() != want {
			t.Errorf("%s while migrating: got %v, want %q", cmd, err, want)
		}
	}
	own.release(func() { mg.finish(engine.Report{Status: "failed"}, api.SideRunning) })
	if err := call("hint-done", nil); err != nil {
		t.Errorf("hint-done once the migration ended: %v", err)
	}
}
