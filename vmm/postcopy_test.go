package vmm

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/vmm/api"
	"github.com/ferryvm/ferry/vmm/control"
)

// startPostcopyCaller serves migrate-start-postcopy for mg on a real
// control socket and returns a function that calls it.
func startPostcopyCaller(t *testing.T, mg *migration) func() (api.StartPostcopyResult, error) {
	sock := filepath.Join(t.TempDir(), "c.sock")
	s, err := control.NewServer(sock, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Handle("migrate-start-postcopy", mg.handleStartPostcopy)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return func() (api.StartPostcopyResult, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var res api.StartPostcopyResult
		err := control.Call(ctx, sock, "migrate-start-postcopy", nil, &res)
		return res, err
	}
}

// TestStartPostcopy: migrate-start-postcopy closes the running
// migrate-send's channel (what the engine watches) once; a second call
// is a no-op that says so; without a running outgoing migration it fails
// with a sentence saying why.
func TestStartPostcopy(t *testing.T) {
	mg := &migration{}
	call := startPostcopyCaller(t, mg)
	if _, err := call(); err == nil || !strings.Contains(err.Error(), "no migration is running") {
		t.Errorf("before any migration: %v", err)
	}

	v := fakeVM(StateRunning)
	own := claimFake(t, v, mg, engine.PhaseDirty)
	ch := mg.switchable() // what startMigration hands to the engine
	select {
	case <-ch:
		t.Fatal("the channel is closed before the command")
	default:
	}
	res, err := call()
	if err != nil || !res.Requested || res.Phase != engine.PhaseDirty || !strings.Contains(res.Message, "switches to post-copy") {
		t.Fatalf("first call: %+v, %v", res, err)
	}
	select {
	case <-ch:
	default:
		t.Fatal("the command did not close the engine's channel")
	}
	res, err = call()
	if err != nil || res.Requested || !strings.Contains(res.Message, "already requested") {
		t.Errorf("second call: %+v, %v; want a no-op that says so", res, err)
	}

	own.release(func() { mg.finish(engine.Report{Status: engine.StatusCompleted}, api.SideMigrated) })
	if _, err := call(); err == nil || !strings.Contains(err.Error(), "already ended (completed)") {
		t.Errorf("after the migration: %v", err)
	}

	// A new migration gets a new channel, not the closed one.
	own = claimFake(t, v, mg, engine.PhaseBulk)
	if ch2 := mg.switchable(); ch2 == ch {
		t.Error("a new migration reuses the closed channel")
	}
	if res, err := call(); err != nil || !res.Requested {
		t.Errorf("first call in the second migration: %+v, %v", res, err)
	}
	own.release(func() { mg.finish(engine.Report{Status: engine.StatusFailed}, api.SideRunning) })
}

// TestStartPostcopyRefusals: the destination, a migration still
// starting, and arguments are refused; a switch-over already under way
// is said plainly.
func TestStartPostcopyRefusals(t *testing.T) {
	mg := &migration{}
	call := startPostcopyCaller(t, mg)
	v := fakeWithRAM(t, StateIncoming)
	own, err := v.claim(context.Background(), mg, transport.RoleReceive.String(), "", takes(func() {}),
		func(st State) error { return v.canMigrate(transport.RoleReceive, st) })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := call(); err == nil || !strings.Contains(err.Error(), "run migrate-start-postcopy on the source") {
		t.Errorf("on the destination: %v", err)
	}
	own.release(func() { mg.finish(engine.Report{Status: engine.StatusFailed}, api.SideFailed) })

	v = fakeVM(StateRunning)
	own = claimFake(t, v, mg, engine.PhaseSetup)
	if _, err := call(); err == nil || !strings.Contains(err.Error(), "still starting") {
		t.Errorf("before the engine got its channel: %v", err)
	}
	mg.switchable()
	mg.progress(engine.Progress{Phase: engine.PhaseStop})
	if res, err := call(); err != nil || !res.Requested || !strings.Contains(res.Message, "switch-over had already begun") {
		t.Errorf("in stop-and-copy: %+v, %v", res, err)
	}
	mg.switchable()
	mg.progress(engine.Progress{Phase: engine.PhasePostcopy})
	if res, err := call(); err != nil || res.Requested || !strings.Contains(res.Message, "already switched") {
		t.Errorf("in post-copy (auto switched): %+v, %v", res, err)
	}
	if _, err := mg.handleStartPostcopy(context.Background(), []byte(`{"now":true}`)); err == nil {
		t.Error("arguments accepted")
	}
	own.release(func() { mg.finish(engine.Report{Status: engine.StatusFailed}, api.SideRunning) })
}

// TestMigrateArgsPostcopy: the job's post-copy limits reach the engine;
// a mode the engine does not know and a negative timeout are refused.
func TestMigrateArgsPostcopy(t *testing.T) {
	a := api.MigrateArgs{Postcopy: engine.PostcopyAuto, ReconnectTimeoutMS: 60000}
	if o := sessionSpec(a).Engine; o.Postcopy != engine.PostcopyAuto || o.ReconnectTimeout != time.Minute {
		t.Errorf("engine options %q, %v; want auto, 1m", o.Postcopy, o.ReconnectTimeout)
	}
	for _, raw := range []string{`{"plugin":"/bin/true","postcopy":"hybrid"}`, `{"plugin":"/bin/true","reconnect_timeout_ms":-1}`} {
		if _, err := parseMigrateArgs([]byte(raw)); err == nil {
			t.Errorf("%s accepted", raw)
		}
	}
}

// TestCancelRefusedInPostcopy: migrate-cancel answers what the engine's
// Cancel decided: cancelled when it took; refused, saying why, when the
// migration held (post-copy: the guest runs on the destination and
// needs the source's pages; a pre-copy source writing COMMIT or waiting
// for RUNNING; a pre-copy destination acting on COMMIT). The last
// progress report does not decide (it follows the hold a moment later:
// TestCancelAnswerIsExact).
func TestCancelRefusedInPostcopy(t *testing.T) {
	const cancels, postcopy, committing = 0, 1, 2
	for _, tc := range []struct {
		role           string
		took, postcopy bool
		want           int
		why            string
	}{
		{"send", true, false, cancels, ""},
		{"receive", true, false, cancels, ""},
		{"send", false, false, committing, "COMMIT is going or has gone out"},
		{"receive", false, false, committing, "COMMIT arrived: the guest runs here"},
		{"send", false, true, postcopy, "post-copy cannot be cancelled"},
		{"receive", false, true, postcopy, "post-copy cannot be cancelled"},
	} {
		mg := &migration{}
		asked := 0
		if err := mg.begin(tc.role, "", func() (bool, bool) { asked++; return tc.took, tc.postcopy }); err != nil {
			t.Fatal(err)
		}
		// The progress says nothing of the hold yet, as right after it.
		mg.progress(engine.Progress{Phase: engine.PhaseState, Handover: engine.HandoverLoaded})
		res, _ := mg.cancelRunning(api.IDArgs{})
		if asked != 1 || res.Cancelled != (tc.want == cancels) || res.Postcopy != (tc.want == postcopy) || res.Committing != (tc.want == committing) {
			t.Errorf("%s, engine took %v post-copy %v: %+v (engine asked %d times)", tc.role, tc.took, tc.postcopy, res, asked)
		}
		if !strings.Contains(res.Why, tc.why) {
			t.Errorf("%s, engine took %v post-copy %v: why %q, want %q in it", tc.role, tc.took, tc.postcopy, res.Why, tc.why)
		}
	}
	if res, err := (&migration{}).cancelRunning(api.IDArgs{}); err != nil || res.Cancelled || res.Why != "no migration is running" {
		t.Errorf("without a migration: %+v", res)
	}
}

// TestShutdownWaitsForHandover: the VMM's own shutdown waits while it
// sends a migration in post-copy (exiting would lose the guest that runs
// on the destination) or in its handover (stopping the paused VM could
// leave no copy), and not otherwise: not in a live pre-copy pass, not on
// the receiving side.
func TestShutdownWaitsForHandover(t *testing.T) {
	for _, tc := range []struct {
		role string
		p    engine.Progress
		wait bool
	}{
		{"send", engine.Progress{Phase: engine.PhasePostcopy, Mode: engine.ModePostcopy}, true},
		{"send", engine.Progress{Phase: engine.PhaseStop, Mode: engine.ModePrecopy, Handover: engine.HandoverSwitchover}, true},
		{"send", engine.Progress{Phase: engine.PhaseState, Mode: engine.ModePrecopy, Handover: engine.HandoverCommitting}, true},
		// The engine's last report of a handover left unknown, before
		// the VMM recorded the end (endMigration): stopping the paused
		// VM then left a source that says handover-unknown and cannot
		// resume, and migrate's resolve discarded the destination's copy
		// before it found that out.
		{"send", engine.Progress{Phase: engine.PhaseDone, Mode: engine.ModePrecopy, Handover: engine.HandoverUnknown}, true},
		{"send", engine.Progress{Phase: engine.PhaseDirty, Mode: engine.ModePrecopy, Handover: engine.HandoverLive}, false},
		{"send", engine.Progress{Phase: engine.PhaseDone, Mode: engine.ModePrecopy, Handover: engine.HandoverFailed}, false},
		{"receive", engine.Progress{Phase: engine.PhasePostcopy, Mode: engine.ModePostcopy, Handover: engine.HandoverPostcopy}, false},
	} {
		mg := &migration{}
		v := bareVM(StateRunning) // a destination in post-copy runs the guest
		v.mig = mg
		if err := mg.begin(tc.role, "", takes(func() {})); err != nil {
			t.Fatal(err)
		}
		mg.progress(tc.p)
		returned := make(chan struct{})
		go func() { v.shutdown(); close(returned) }() // as Run does on the first signal
		// Going on is waited for up to 5 s (a loaded machine may run the
		// goroutine late); waiting is seen as not going on within 100 ms.
		patience := 100 * time.Millisecond
		if !tc.wait {
			patience = 5 * time.Second
		}
		select {
		case <-returned:
			if tc.wait {
				t.Fatalf("%s %+v: shutdown went on", tc.role, tc.p)
			}
			continue
		case <-time.After(patience):
			if !tc.wait {
				t.Fatalf("%s %+v: shutdown waited", tc.role, tc.p)
			}
		}
		mg.finish(engine.Report{Status: engine.StatusCompleted}, api.SideMigrated)
		select {
		case <-returned:
		case <-time.After(5 * time.Second):
			t.Fatal("shutdown still waits after the migration ended")
		}
	}
}

// TestShutdownCancelsIncoming: the first signal to a destination VMM
// whose guest does not run here yet cancels the incoming migration and
// stops the VM only once it ended (the engine told the source, which
// runs the guest on); a destination whose guest runs here (pre-copy
// committed, or post-copy) is stopped as any running VM, its migration
// not cancelled. Before, the stop alone left the migration running
// behind it until the source sent every page or incoming_timeout passed.
func TestShutdownCancelsIncoming(t *testing.T) {
	for _, tc := range []struct {
		h      engine.Handover
		cancel bool
	}{
		{engine.HandoverWaiting, true},
		{engine.HandoverReceiving, true},
		{engine.HandoverLoaded, true},
		{engine.HandoverRunning, false},
		{engine.HandoverPostcopy, false},
	} {
		mg := &migration{}
		v := bareVM(StatePaused)
		v.mig = mg
		cancelled := make(chan struct{})
		if err := mg.begin(transport.RoleReceive.String(), "", takes(func() { close(cancelled) })); err != nil {
			t.Fatal(err)
		}
		mg.progress(engine.Progress{Handover: tc.h})
		done := make(chan struct{})
		go func() { v.shutdown(); close(done) }() // as Run does on the first signal
		select {
		case <-cancelled:
			if !tc.cancel {
				t.Fatalf("%s: the migration was cancelled", tc.h)
			}
			select {
			case <-done:
				t.Fatalf("%s: the shutdown went on before the migration ended", tc.h)
			case <-time.After(100 * time.Millisecond):
			}
			if st := v.Status().State; st == StateStopped {
				t.Fatalf("%s: stopped before the migration ended", tc.h)
			}
			mg.finish(engine.Report{Status: engine.StatusCancelled, Handover: engine.HandoverFailed}, api.SideFailed)
		case <-done:
			if tc.cancel {
				t.Fatalf("%s: stopped without cancelling the migration", tc.h)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: the shutdown neither cancelled nor went on", tc.h)
		}
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: the shutdown still waits after the migration ended", tc.h)
		}
		if st := v.Status().State; st != StateStopped {
			t.Errorf("%s: VM %s after the shutdown, want stopped", tc.h, st)
		}
	}
}

// TestResumeNeverAfterStop: a resume that races a stop (the VMM's own
// shutdown does not take the run lock) either ran the VM before the stop
// or fails; it never reports a VM running that the stop had ended (a
// destination would then answer COMMIT with RUNNING for a guest running
// nowhere). Before, it read the state, let go of the lock, and reported
// success when the stop came in between.
func TestResumeNeverAfterStop(t *testing.T) {
	for i := 0; i < 2000; i++ {
		v := bareVM(StatePaused)
		stopped := make(chan struct{})
		go func() { v.Stop(); close(stopped) }()
		err := v.resume()
		<-stopped
		v.mu.Lock()
		ran := !v.started.IsZero()
		v.mu.Unlock()
		if err == nil && !ran {
			t.Fatalf("run %d: resume succeeded, but the VM never ran: the stop came first", i)
		}
	}
}

// TestShutdownWaitsWhileUnknown: a migration that ended handover-unknown
// leaves a paused VM that may be the only copy of the guest (quit is
// refused there): the VMM's own shutdown waits until migrate-resolve
// moved it; then it stops a VM handed to the destination, and never one
// resumed here as the guest's only copy. Found by audit: a post-copy
// source whose shutdown was deferred until the migration ended stopped a
// handover-unknown VM, and then one that migrate -resolve had just resumed.
func TestShutdownWaitsWhileUnknown(t *testing.T) {
	for _, action := range []string{api.ResolveMigrated, api.ResolveResume} {
		mg := &migration{}
		v := bareVM(StatePaused) // paused by the engine at the switch
		v.mig = mg
		if err := mg.begin("send", "", takes(func() {})); err != nil {
			t.Fatal(err)
		}
		mg.progress(engine.Progress{Phase: engine.PhasePostcopy, Mode: engine.ModePostcopy, Handover: engine.HandoverCommitting})
		done := make(chan struct{})
		go func() { v.shutdown(); close(done) }() // as Run does on the first signal
		time.Sleep(50 * time.Millisecond)
		rep := engine.Report{Status: engine.StatusHandoverUnknown, Handover: engine.HandoverUnknown, Mode: engine.ModePostcopy}
		side := sideAfter(transport.RoleSend, rep, false)
		v.migrationDone(transport.RoleSend, side, engine.ErrHandoverUnknown, func() { mg.finish(rep, side) })
		select {
		case <-done:
			t.Fatalf("the deferred shutdown went on with a handover-unknown VM (now %s)", v.Status().State)
		case <-time.After(200 * time.Millisecond):
		}
		if st := v.Status().State; st != StateHandoverUnknown {
			t.Fatalf("VM %s, want handover-unknown", st)
		}
		if _, err := v.resolve(context.Background(), mg, action); err != nil {
			t.Fatal(err)
		}
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: the shutdown still waits after the handover was resolved", action)
		}
		want := map[string]State{api.ResolveMigrated: StateStopped, api.ResolveResume: StateRunning}[action]
		if st := v.Status().State; st != want {
			t.Errorf("resolved %s: VM %s after the deferred shutdown, want %s", action, st, want)
		}
	}
}

// TestCompletedWithCheckErrorKeepsRunning: a post-copy whose page check
// failed completed all the same (engine.ErrPostcopyCheck, Status
// completed): the destination's VM runs on, the source is handed over.
// Found by audit: as "failed", the destination stopped the only running
// copy and the source called its stale copy "running".
func TestCompletedWithCheckErrorKeepsRunning(t *testing.T) {
	err := fmt.Errorf("%w: 3 pages differed", engine.ErrPostcopyCheck)
	dst := bareVM(StateRunning) // the engine resumed it at COMMIT
	rep := engine.Report{Status: engine.StatusCompleted, Error: err.Error(), Handover: engine.HandoverRunning, Mode: engine.ModePostcopy}
	side := sideAfter(transport.RoleReceive, rep, true)
	dst.migrationDone(transport.RoleReceive, side, err, func() {})
	if side != api.SideRunning || dst.Status().State != StateRunning {
		t.Errorf("destination: side %s, VM %s; want running", side, dst.Status().State)
	}
	src := bareVM(StatePaused)
	rep.Handover = engine.HandoverCompleted
	side = sideAfter(transport.RoleSend, rep, false)
	src.migrationDone(transport.RoleSend, side, err, func() {})
	if side != api.SideMigrated || src.Status().State != StateMigrated {
		t.Errorf("source: side %s, VM %s; want migrated", side, src.Status().State)
	}
}

// TestTransportInProcess: with -transport-in-process a migration whose
// plugin is ferry-transport-tcp runs transports/tcp in this process (no
// plugin process on a post-copy request's path); other transports, and
// every transport without the flag, stay plugins.
func TestTransportInProcess(t *testing.T) {
	for _, tc := range []struct {
		flag   bool
		plugin string
		want   bool
	}{
		{true, "/opt/ferry/plugins/ferry-transport-tcp", true},
		{true, "/opt/ferry/plugins/ferry-transport-rdma", false},
		{false, "/opt/ferry/plugins/ferry-transport-tcp", false},
	} {
		v := &VM{cfg: Config{TransportInProcess: tc.flag}, log: slog.New(slog.DiscardHandler)}
		spec, _, err := v.migrateSpec([]byte(`{"plugin":"` + tc.plugin + `"}`))
		if err != nil {
			t.Fatal(err)
		}
		if got := spec.TransportInProcess != nil; got != tc.want || spec.Transport.Path != tc.plugin {
			t.Errorf("flag %v, plugin %s: in process %v, path %q", tc.flag, tc.plugin, got, spec.Transport.Path)
		}
	}
}

// TestShutdownRefusesCommitAfterCancel: once the VMM's shutdown
// cancelled an incoming migration, the engine's Resume at COMMIT is
// refused (the engine then answers ABORT and the source runs the guest
// on). The engine sees the cancel a moment late (heldCtx follows its
// parent on a goroutine of its own) and may have read COMMIT just
// before: before, such a COMMIT ran the guest here, the source heard
// RUNNING and paused its copy for good, and the shutdown then stopped
// the only running copy. A destination whose guest already runs here
// when the signal comes is stopped as any running VM, its migration not
// cancelled.
func TestShutdownRefusesCommitAfterCancel(t *testing.T) {
	for _, runs := range []bool{false, true} {
		v := bareVM(StatePaused) // LoadState done
		if runs {
			v.state = StateRunning // the engine's Resume came first
		}
		mg := &migration{}
		v.mig = mg
		cancelled := make(chan struct{})
		own, err := v.claim(context.Background(), mg, transport.RoleReceive.String(), "", takes(func() { close(cancelled) }),
			func(State) error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		mg.progress(engine.Progress{Handover: engine.HandoverLoaded}) // not yet updated past LOADED
		done := make(chan struct{})
		go func() { v.shutdown(); close(done) }()
		if runs {
			select {
			case <-done:
			case <-cancelled:
				t.Fatal("the guest runs here: the shutdown cancelled its migration, and waits for it to end")
			case <-time.After(5 * time.Second):
				t.Fatal("the guest runs here: the shutdown waits for its migration")
			}
			if st := v.Status().State; st != StateStopped {
				t.Errorf("VM %s after the shutdown, want stopped", st)
			}
			continue
		}
		select {
		case <-cancelled:
		case <-time.After(5 * time.Second):
			t.Fatal("the shutdown did not cancel the incoming migration")
		}
		// The engine read COMMIT before its context said cancelled.
		if err := (migrationVM{v: v, own: own}).Resume(); err == nil {
			t.Fatal("the engine's Resume after the shutdown's cancel ran the guest here")
		}
		if st := v.Status().State; st != StatePaused {
			t.Fatalf("VM %s after the refused Resume, want paused", st)
		}
		rep := engine.Report{Status: engine.StatusCancelled, Handover: engine.HandoverFailed}
		own.release(func() {
			v.migrationDone(transport.RoleReceive, api.SideFailed, context.Canceled, func() { mg.finish(rep, api.SideFailed) })
		})
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("the shutdown still waits after the migration ended")
		}
		if st := v.Status().State; st != StateStopped {
			t.Errorf("VM %s after the shutdown, want stopped", st)
		}
	}
}

// TestCancelAfterFailedPostcopyResume: on a post-copy destination whose
// engine held for post-copy at COMMIT (engine.Cancel refuses) and whose
// Resume then failed (the VM stopped, or the VMM's shutdown had
// cancelled the incoming migration), migrate-cancel says so: the guest
// never ran here, the source is told to run it on, and the migration
// ends failed within seconds. Before, it answered that post-copy cannot
// be cancelled because the guest runs on the destination, which it did
// not.
func TestCancelAfterFailedPostcopyResume(t *testing.T) {
	for _, tc := range []struct {
		name string
		fail func(v *VM)
	}{
		{"the VM stopped", func(v *VM) { v.Stop() }},
		{"the shutdown cancelled", func(v *VM) { v.incomingCancelled = true }},
	} {
		v, mg, m := heldDestination(t)
		mg.progress(engine.Progress{Phase: engine.PhaseState, Mode: engine.ModePostcopy, Handover: engine.HandoverLoaded})
		tc.fail(v)
		if err := m.Resume(); err == nil { // COMMIT
			t.Fatalf("%s: the engine's Resume at COMMIT succeeded", tc.name)
		}
		res, err := mg.cancelRunning(api.IDArgs{})
		if err != nil || res.Cancelled || res.Postcopy || !res.Committing || res.Why != errResumeFailedNoCancel {
			t.Errorf("%s: migrate-cancel after the failed Resume: %+v, %v; want not cancelled, committing, saying the guest never ran here",
				tc.name, res, err)
		}
		// The refused engine.Cancel ends the engine's wait for a source
		// that lost the ABORT (heldCtx.telling): the answer says so, and
		// what such a source then ends as.
		if !strings.Contains(res.Why, "ends its wait") || !strings.Contains(res.Why, "handover-unknown") {
			t.Errorf("%s: migrate-cancel's answer %q does not say that it ends the wait for a source that lost the ABORT, "+
				"nor what that source then ends as", tc.name, res.Why)
		}
	}
}
