package vmm

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/vmm/api"
	"github.com/ferryvm/ferry/vmm/vcpu"
)

func TestSideAfter(t *testing.T) {
	for _, c := range []struct {
		role   transport.Role
		status engine.Status
		ran    bool // the VM runs, or ran after the engine's pause (endMigration)
		want   api.Side
	}{
		{transport.RoleSend, engine.StatusCompleted, false, api.SideMigrated},
		{transport.RoleSend, engine.StatusFailed, true, api.SideRunning},
		{transport.RoleSend, engine.StatusCancelled, true, api.SideRunning},
		{transport.RoleSend, engine.StatusFailed, false, api.SideFailed}, // stopped before its resume
		{transport.RoleSend, engine.StatusCancelled, false, api.SideFailed},
		{transport.RoleSend, engine.StatusHandoverUnknown, false, api.SideUnknown},
		{transport.RoleReceive, engine.StatusCompleted, true, api.SideRunning},
		{transport.RoleReceive, engine.StatusFailed, false, api.SideFailed},
		{transport.RoleReceive, engine.StatusCancelled, false, api.SideFailed},
		{transport.RoleReceive, engine.StatusHandoverUnknown, false, api.SideUnknown},
		{transport.RoleSend, engine.StatusPostcopyBroken, false, api.SidePostcopyBroken},
		{transport.RoleReceive, engine.StatusPostcopyBroken, true, api.SidePostcopyBroken},
	} {
		if got := sideAfter(c.role, engine.Report{Status: c.status}, c.ran); got != c.want {
			t.Errorf("%s %s (ran %v): side %s, want %s", c.role, c.status, c.ran, got, c.want)
		}
	}
}

// TestFailedSourceStoppedIsNotRunning: the source VMM's shutdown
// (SIGTERM) came while the migration was live, so it did not wait
// (handoverWait) and stopped the VM; the engine's next Pause failed,
// and so did its Resume. The migration reports the source failed, not
// running: "running" would have migrate take this stopped copy for the
// guest's, say "the source keeps running", and give up a destination
// left handover-unknown (plan discards one beside a running source).
// The VM stays stopped. Found reviewing sideAfter against the handover
// model (docs/model), which assumed the resume worked.
func TestFailedSourceStoppedIsNotRunning(t *testing.T) {
	v, m := liveSource(t, engine.Progress{Phase: engine.PhaseDirty, Mode: engine.ModePrecopy, Handover: engine.HandoverLive})
	v.shutdown() // the first signal: a live pre-copy is not waited for
	perr := m.Pause(context.Background())
	rerr := m.Resume() // switchOver: a failed pause resumes the VM
	if perr == nil || rerr == nil {
		t.Fatalf("pause %v, resume %v: want both refused on a stopped VM", perr, rerr)
	}
	st := sourceFailed(v, m, fmt.Errorf("pause: %w", perr))
	if st.Side != api.SideFailed || !st.Done {
		t.Errorf("side %s (done %v), want %s: the VM is %s", st.Side, st.Done, api.SideFailed, v.Status().State)
	}
	if s := v.Status().State; s != StateStopped {
		t.Errorf("VM %s, want stopped", s)
	}
}

// TestFailedSourceRanThenStopped: the engine paused the source for the
// switch, the handover failed before COMMIT (LOADED never came) and the
// engine resumed the VM; the guest then powered off before the engine
// returned (Send still tells the destination ABORT and closes its
// plugins, seconds at worst). The guest ran here after the pause, so a
// destination that loaded the state and missed the ABORT holds an older
// copy: the side is running (plan discards that destination, migrate
// prints "Never run the destination"), not failed, which says the VM was
// stopped before it could be resumed and leaves the destination's
// resume line in migrate's manual steps. Decided from the VM's state
// alone, the side was failed.
func TestFailedSourceRanThenStopped(t *testing.T) {
	v, m := liveSource(t, engine.Progress{Phase: engine.PhaseState, Mode: engine.ModePrecopy, Handover: engine.HandoverSwitchover})
	if err := m.Pause(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := m.Resume(); err != nil { // switchOver: LOADED never came
		t.Fatal(err)
	}
	v.finish(0, nil) // the guest powers off
	st := sourceFailed(v, m, fmt.Errorf("waiting for the destination to load: %w", context.DeadlineExceeded))
	if st.Side != api.SideRunning || !st.Done {
		t.Errorf("side %s (done %v), want %s: the guest ran here after the pause", st.Side, st.Done, api.SideRunning)
	}
	if s := v.Status().State; s != StateStopped {
		t.Errorf("VM %s, want stopped", s)
	}
}

// liveSource is a running bare VM whose migration, as the source, has
// reached p: the engine's view of the VM (migrationVM) and the VM.
func liveSource(t *testing.T, p engine.Progress) (*VM, migrationVM) {
	t.Helper()
	v := bareVM(StateRunning)
	v.mig = &migration{}
	own, err := v.claim(context.Background(), v.mig, transport.RoleSend.String(), "m1", takes(func() {}), func(State) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	v.mig.progress(p)
	return v, migrationVM{v: v, own: own}
}

// sourceFailed ends liveSource's migration as Send returning failed with
// err does, and returns the migration's status then.
func sourceFailed(v *VM, m migrationVM, err error) *api.Migration {
	v.endMigration(m.own, v.mig, transport.RoleSend, engine.Report{Status: engine.StatusFailed, Error: err.Error()}, err)
	return v.mig.status()
}

func TestResolveTarget(t *testing.T) {
	send, recv := transport.RoleSend.String(), transport.RoleReceive.String()
	for _, c := range []struct {
		role, action string
		want         api.Side
	}{
		{send, api.ResolveResume, api.SideRunning},
		{send, api.ResolveMigrated, api.SideMigrated},
		{send, api.ResolveDiscard, ""},
		{recv, api.ResolveResume, api.SideRunning},
		{recv, api.ResolveDiscard, api.SideDiscarded},
		{recv, api.ResolveMigrated, ""},
		{recv, "run", ""},
		{"", api.ResolveDiscard, ""},
	} {
		got, err := resolveTarget(c.role, c.action)
		if got != c.want || (err == nil) != (c.want != "") {
			t.Errorf("%q %q: %q, %v; want %q", c.role, c.action, got, err, c.want)
		}
	}
}

// bareVM is a VM without KVM: enough state for the resolve commands.
func bareVM(state State) *VM {
	v := &VM{run: newRunLock(), gate: vcpu.NewGate(), stopped: make(chan struct{}), cpusDone: make(chan struct{}), log: slog.New(slog.DiscardHandler)}
	v.state = state
	return v
}

// unknownMigration is a finished migration whose handover is unknown.
func unknownMigration(role transport.Role) *migration {
	rep := engine.Report{Status: engine.StatusHandoverUnknown, Handover: engine.HandoverUnknown}
	return &migration{cur: &api.Migration{Role: role.String(), Done: true, Side: api.SideUnknown, Report: &rep}}
}

func TestResolve(t *testing.T) {
	for _, c := range []struct {
		role    transport.Role
		actions []string
		side    api.Side
		state   State
		errs    int // how many of the actions fail
	}{
		{transport.RoleSend, []string{api.ResolveQuery}, api.SideUnknown, StateHandoverUnknown, 0},
		{transport.RoleSend, []string{api.ResolveResume}, api.SideRunning, StateRunning, 0},
		{transport.RoleSend, []string{api.ResolveMigrated, api.ResolveMigrated}, api.SideMigrated, StateMigrated, 0},
		{transport.RoleSend, []string{api.ResolveMigrated, api.ResolveResume}, api.SideMigrated, StateMigrated, 1},
		{transport.RoleSend, []string{api.ResolveDiscard}, api.SideUnknown, StateHandoverUnknown, 1},
		{transport.RoleReceive, []string{api.ResolveResume, api.ResolveDiscard}, api.SideRunning, StateRunning, 1},
		{transport.RoleReceive, []string{api.ResolveDiscard, api.ResolveResume}, api.SideDiscarded, StateDiscarded, 1},
		{transport.RoleReceive, []string{api.ResolveMigrated}, api.SideUnknown, StateHandoverUnknown, 1},
	} {
		v, mg := bareVM(StateHandoverUnknown), unknownMigration(c.role)
		errs := 0
		var res api.ResolveResult
		for _, a := range c.actions {
			var err error
			if res, err = v.resolve(context.Background(), mg, a); err != nil {
				errs++
			}
		}
		if res.Side != c.side || v.Status().State != c.state || errs != c.errs {
			t.Errorf("%s %v: side %s, state %s, %d errors; want %s, %s, %d",
				c.role, c.actions, res.Side, v.Status().State, errs, c.side, c.state, c.errs)
		}
		select {
		case <-v.stopped:
			t.Errorf("%s %v: the VMM ended by itself", c.role, c.actions)
		default:
		}
		// The plain commands refuse a VM whose handover is unknown.
		if c.state == StateHandoverUnknown {
			if err := v.Resume(); err == nil {
				t.Errorf("%s: resume of a handover-unknown VM succeeded", c.role)
			}
			if err := v.Pause(context.Background()); err == nil {
				t.Errorf("%s: pause of a handover-unknown VM succeeded", c.role)
			}
		}
	}
}

// TestResolveRefusesPostcopyDestination: a destination that switched to
// post-copy and ended handover-unknown never got COMMIT: it lacks the
// pages the source had not sent yet, and its userfaultfd is closed, so
// they would read as zeros. migrate-resolve resume must refuse to run
// it there (the source holds the whole guest); discard still works. The
// source's own resume, and a pre-copy destination's, still run, and so
// does a post-copy destination's whose report says no page is missing
// (every one had arrived: a guest whose source is gone for good is not
// lost for want of a COMMIT).
func TestResolveRefusesPostcopyDestination(t *testing.T) {
	none, some := uint64(0), uint64(5)
	for _, c := range []struct {
		role    transport.Role
		mode    string
		missing *uint64 // Report.PagesMissing
		action  string
		want    State
	}{
		{transport.RoleReceive, engine.ModePostcopy, nil, api.ResolveResume, StateHandoverUnknown},
		{transport.RoleReceive, engine.ModePostcopy, &some, api.ResolveResume, StateHandoverUnknown},
		// Every page had arrived before COMMIT was lost: the whole guest
		// is here, as on a pre-copy destination.
		{transport.RoleReceive, engine.ModePostcopy, &none, api.ResolveResume, StateRunning},
		{transport.RoleReceive, engine.ModePostcopy, &some, api.ResolveDiscard, StateDiscarded},
		{transport.RoleReceive, engine.ModePrecopy, nil, api.ResolveResume, StateRunning},
		{transport.RoleSend, engine.ModePostcopy, nil, api.ResolveResume, StateRunning},
	} {
		v, mg := bareVM(StateHandoverUnknown), unknownMigration(c.role)
		mg.cur.Report.Mode, mg.cur.Report.PagesMissing = c.mode, c.missing
		res, err := v.resolve(context.Background(), mg, c.action)
		if st := v.Status().State; st != c.want {
			t.Errorf("%s %s %s: VM %s (side %s, %v), want %s", c.role, c.mode, c.action, st, res.Side, err, c.want)
		}
		if refused := c.want == StateHandoverUnknown; refused != (err != nil) || refused && res.Side != api.SideUnknown {
			t.Errorf("%s %s %s: side %s, err %v; refused: %v", c.role, c.mode, c.action, res.Side, err, refused)
		}
		if c.want == StateHandoverUnknown && (err == nil || !strings.Contains(err.Error(), "post-copy")) {
			t.Errorf("%s %s %s: %v, want a refusal that names post-copy", c.role, c.mode, c.action, err)
		}
	}
}

// TestResolveNeverRunsHandedOver: a source that handed its guest over
// (migrated), or whose post-copy broke (its copy is older than what ran
// on the destination), never runs again: no resolve action moves it, and
// the plain commands refuse it.
func TestResolveNeverRunsHandedOver(t *testing.T) {
	for _, c := range []struct {
		side  api.Side
		state State
	}{{api.SideMigrated, StateMigrated}, {api.SidePostcopyBroken, StatePostcopyBroken}} {
		v, mg := bareVM(c.state), unknownMigration(transport.RoleSend)
		mg.cur.Side = c.side
		for _, a := range []string{api.ResolveResume, api.ResolveDiscard, api.ResolveMigrated} {
			res, err := v.resolve(context.Background(), mg, a)
			if st := v.Status().State; st != c.state || res.Side != c.side || (err == nil) != (a == api.ResolveMigrated && c.side == api.SideMigrated) {
				t.Errorf("%s: %s: side %s, VM %s, %v", c.side, a, res.Side, st, err)
			}
		}
		if err := v.Resume(); err == nil || v.Status().State != c.state {
			t.Errorf("%s: resume: %v, VM %s", c.side, err, v.Status().State)
		}
	}
}

// TestShutdownBeforeUnknownRecorded: the VMM's first signal comes after
// Send's last progress report (phase done, handover unknown) and before
// the VMM recorded the end (endMigration). The paused VM may be the only
// copy of the guest: the shutdown must wait as in the handover, then for
// migrate-resolve. Found by audit: it decided from that report, which
// is neither switch-over nor committing, found the VM still paused (not
// yet handover-unknown) and stopped it; the source then said
// handover-unknown with its VM stopped, and migrate's resolve, beside a
// destination that lost COMMIT, discarded the destination's copy and
// only then found the source's resume failing: the guest was lost.
func TestShutdownBeforeUnknownRecorded(t *testing.T) {
	v, m := liveSource(t, engine.Progress{Phase: engine.PhaseState, Mode: engine.ModePrecopy, Handover: engine.HandoverCommitting})
	deferred := make(chan string, 4)
	v.log = slog.New(logTap{c: deferred, prefix: "shutdown deferred"})
	if err := m.Pause(context.Background()); err != nil { // the engine's pause at the switch
		t.Fatal(err)
	}
	v.mig.progress(engine.Progress{Phase: engine.PhaseDone, Mode: engine.ModePrecopy, Handover: engine.HandoverUnknown})
	done := make(chan struct{})
	go func() { v.shutdown(); close(done) }() // as Run does on the first signal
	select {
	case <-deferred:
	case <-done:
		t.Fatalf("the shutdown went on before the end was recorded: VM %s", v.Status().State)
	}
	rep := engine.Report{Status: engine.StatusHandoverUnknown, Handover: engine.HandoverUnknown, Mode: engine.ModePrecopy}
	v.endMigration(m.own, v.mig, transport.RoleSend, rep, engine.ErrHandoverUnknown)
	if st := v.Status().State; st != StateHandoverUnknown {
		t.Fatalf("VM %s after the end was recorded, want %s", st, StateHandoverUnknown)
	}
	// migrate -resolve beside a destination that lost COMMIT: the
	// destination is discarded first, then this side must run.
	if res, err := v.resolve(context.Background(), v.mig, api.ResolveResume); err != nil || res.Side != api.SideRunning {
		t.Fatalf("resume: side %s, %v", res.Side, err)
	}
	<-done // resumed here as the only copy: the shutdown is cancelled
	if st := v.Status().State; st != StateRunning {
		t.Errorf("VM %s after the deferred shutdown, want running", st)
	}
}

// TestShutdownResolvedBeforeLook: a shutdown deferred until its
// migration ended (handoverWait) looks at the VM once its goroutine
// runs again, which may be after migrate -resolve already moved it: the
// handover ended unknown and was resolved "resume" here, the guest's
// only copy. That shutdown must not stop it, as it does not when it saw
// the resolve come; a shutdown that did not wait (a later signal) stops
// the VM as any other. Found by audit: the look decided from the VM's
// state alone, found it running, not handover-unknown, and the
// shutdown stopped the only running copy.
func TestShutdownResolvedBeforeLook(t *testing.T) {
	v, m := liveSource(t, engine.Progress{Phase: engine.PhaseState, Mode: engine.ModePrecopy, Handover: engine.HandoverCommitting})
	if err := m.Pause(context.Background()); err != nil {
		t.Fatal(err)
	}
	rep := engine.Report{Status: engine.StatusHandoverUnknown, Handover: engine.HandoverUnknown, Mode: engine.ModePrecopy}
	v.endMigration(m.own, v.mig, transport.RoleSend, rep, engine.ErrHandoverUnknown)
	if _, err := v.resolve(context.Background(), v.mig, api.ResolveResume); err != nil {
		t.Fatal(err)
	}
	v.mig.mu.Lock()
	m1 := v.mig.cur
	v.mig.mu.Unlock()
	v.shutdownAfter([]*api.Migration{m1}) // deferred by the handover, it looks only now
	if st := v.Status().State; st != StateRunning {
		t.Errorf("VM %s: a shutdown deferred by the handover stopped the guest resumed here as its only copy", st)
	}
	v.shutdown() // a shutdown that did not wait for the handover
	if st := v.Status().State; st != StateStopped {
		t.Errorf("VM %s: a shutdown that did not wait for the handover left a running VM running", st)
	}
}

// TestShutdownIncomingResolvedBeforeLook: a destination's shutdown
// cancels its incoming migration and waits for its end; a stream that
// had broken after LOADED leaves it handover-unknown (the cancel can
// tell nobody), and migrate-resolve may resume the guest here, as its
// only copy, before the shutdown looks again. That shutdown must not
// stop it, as on the source (TestShutdownResolvedBeforeLook).
func TestShutdownIncomingResolvedBeforeLook(t *testing.T) {
	v := bareVM(StatePaused) // the state loaded, LOADED sent
	mg := &migration{}
	v.mig = mg
	end := func() { // the engine ends handover-unknown, then migrate-resolve resumes the guest here
		rep := engine.Report{Status: engine.StatusHandoverUnknown, Handover: engine.HandoverUnknown, Mode: engine.ModePrecopy}
		v.migrationDone(transport.RoleReceive, api.SideUnknown, engine.ErrHandoverUnknown, func() { mg.finish(rep, api.SideUnknown) })
		if _, err := v.resolve(context.Background(), mg, api.ResolveResume); err != nil {
			t.Error(err)
		}
	}
	if err := mg.begin(transport.RoleReceive.String(), "m1", takes(end)); err != nil {
		t.Fatal(err)
	}
	mg.progress(engine.Progress{Phase: engine.PhaseState, Handover: engine.HandoverLoaded})
	v.shutdown() // as Run does on the first signal: end runs as its cancel
	if st := v.Status().State; st != StateRunning {
		t.Errorf("VM %s after the shutdown, want running: resumed here as the guest's only copy", st)
	}
}
