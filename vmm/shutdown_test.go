package vmm

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/vmm/api"
)

// TestShutdownLooksAgainAtLaterMigration: a shutdown deferred until a
// migration (m1) ended looks at the VM again once its goroutine runs,
// which may be after migrate-resolve resumed the guest here, or the
// engine did, and after migrate-send started another migration (m2).
// That look must see m2: wait while m2 hands the VM over or runs in
// post-copy, and leave a guest that resolve resumed here as its only
// copy running also while m2 runs or after m2 failed. Found reviewing
// the audit's fix (endedUnknown looks at the last migration, which is
// then m2): the shutdown stopped the paused VM in m2's handover, the
// only copy of the guest in its post-copy, and the guest resolve had
// resumed here.
func TestShutdownLooksAgainAtLaterMigration(t *testing.T) {
	live := engine.Progress{Phase: engine.PhaseDirty, Mode: engine.ModePrecopy, Handover: engine.HandoverLive}
	postcopy := engine.Progress{Phase: engine.PhasePostcopy, Mode: engine.ModePostcopy, Handover: engine.HandoverPostcopy}
	switchover := engine.Progress{Phase: engine.PhaseStop, Mode: engine.ModePrecopy, Handover: engine.HandoverSwitchover}
	for _, c := range []struct {
		name     string
		m1       engine.Status // how the migration the shutdown waited for ended
		m2       engine.Progress
		paused   bool          // the engine paused the VM for m2's switch
		m2End    engine.Status // "": m2 still runs when the shutdown looks
		ran      bool          // the engine resumed the VM after m2 failed
		wait     bool          // the shutdown must wait for m2's end
		stopped  bool          // and then stop the VM (else it is cancelled)
		lastSide api.Side
	}{
		{name: "resolved here, m2 in post-copy", m1: engine.StatusHandoverUnknown, m2: postcopy, paused: true,
			wait: true, stopped: true, lastSide: api.SideMigrated},
		{name: "resumed by the engine, m2 in its handover", m1: engine.StatusFailed, m2: switchover, paused: true,
			wait: true, stopped: true, lastSide: api.SideMigrated},
		{name: "resolved here, m2 live", m1: engine.StatusHandoverUnknown, m2: live},
		{name: "resolved here, m2 failed", m1: engine.StatusHandoverUnknown, m2: switchover, paused: true,
			m2End: engine.StatusFailed, ran: true, lastSide: api.SideRunning},
		{name: "resolved here, m2 completed", m1: engine.StatusHandoverUnknown, m2: switchover, paused: true,
			m2End: engine.StatusCompleted, stopped: true, lastSide: api.SideMigrated},
	} {
		t.Run(c.name, func(t *testing.T) {
			v, m1 := sourceRanAfter(t, c.m1)
			deferred := make(chan string, 4)
			v.log = slog.New(logTap{c: deferred, prefix: "shutdown deferred"})
			m2 := nextSend(t, v, c.m2, c.paused)
			if c.m2End != "" {
				if c.ran {
					if err := m2.Resume(); err != nil {
						t.Fatal(err)
					}
				}
				v.endMigration(m2.own, v.mig, transport.RoleSend, engine.Report{Status: c.m2End}, nil)
			}
			done := make(chan struct{})
			go func() { v.shutdownAfter([]*api.Migration{m1}); close(done) }() // its goroutine runs late
			if c.wait {
				select {
				case <-deferred:
				case <-done:
					t.Fatalf("the shutdown went on while m2 (%+v) holds the VM: VM %s", c.m2, v.Status().State)
				}
				v.endMigration(m2.own, v.mig, transport.RoleSend, engine.Report{Status: engine.StatusCompleted}, nil)
			}
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatalf("the shutdown still waits: VM %s", v.Status().State)
			}
			st := v.Status().State
			if (st == StateStopped) != c.stopped {
				t.Errorf("VM %s after the shutdown; want stopped: %v", st, c.stopped)
			}
			if s := v.mig.status(); c.lastSide != "" && s.Side != c.lastSide {
				t.Errorf("m2's side %s, want %s", s.Side, c.lastSide)
			}
			if c.m2End == "" && !c.wait { // m2 runs on undisturbed: its switch can pause the VM
				if err := m2.Pause(context.Background()); err != nil {
					t.Errorf("m2's pause after the shutdown: %v", err)
				}
			}
		})
	}
}

// sourceRanAfter is a source VM whose migration m1 paused it for the
// switch and ended as status says, the guest running here again: the
// engine resumed it (failed), or migrate-resolve did (handover-unknown).
// It returns the VM and m1's record.
func sourceRanAfter(t *testing.T, status engine.Status) (*VM, *api.Migration) {
	t.Helper()
	v, m := liveSource(t, engine.Progress{Phase: engine.PhaseState, Mode: engine.ModePrecopy, Handover: engine.HandoverCommitting})
	if err := m.Pause(context.Background()); err != nil {
		t.Fatal(err)
	}
	var err error
	if status == engine.StatusHandoverUnknown {
		err = engine.ErrHandoverUnknown
	} else if err = m.Resume(); err == nil {
		err = fmt.Errorf("waiting for LOADED: %w", context.DeadlineExceeded)
	}
	v.mig.mu.Lock()
	m1 := v.mig.cur
	v.mig.mu.Unlock()
	h := engine.HandoverFailed
	if status == engine.StatusHandoverUnknown {
		h = engine.HandoverUnknown
	}
	v.endMigration(m.own, v.mig, transport.RoleSend, engine.Report{Status: status, Handover: h}, err)
	if status == engine.StatusHandoverUnknown {
		if res, err := v.resolve(context.Background(), v.mig, api.ResolveResume); err != nil || res.Side != api.SideRunning {
			t.Fatalf("resolve resume: side %s, %v", res.Side, err)
		}
	}
	if st := v.Status().State; st != StateRunning {
		t.Fatalf("VM %s after m1, want running", st)
	}
	return v, m1
}

// nextSend starts another migrate-send of v (m2) that reached p; paused:
// the engine paused the VM for its switch.
func nextSend(t *testing.T, v *VM, p engine.Progress, paused bool) migrationVM {
	t.Helper()
	own, err := v.claim(context.Background(), v.mig, transport.RoleSend.String(), "m2", takes(func() {}),
		func(st State) error { return v.canMigrate(transport.RoleSend, st) })
	if err != nil {
		t.Fatal(err)
	}
	m := migrationVM{v: v, own: own}
	if paused {
		v.mig.progress(engine.Progress{Phase: engine.PhaseStop, Mode: engine.ModePrecopy, Handover: engine.HandoverSwitchover})
		if err := m.Pause(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	v.mig.progress(p)
	return m
}

// TestShutdownNotDuringResolveResume: migrate-resolve resumes a
// handover-unknown VM under the run lock in two steps (handover-unknown
// to paused, then running). A signal in between found it paused, which
// is neither handover-unknown nor a handover, and stopped it: the resume
// then failed, after migrate had discarded the destination's copy (the
// guest was lost). The shutdown looks only at a settled state, after
// the resume, and then treats the migration as one it waited through:
// the guest, resumed here as its only copy, runs on (the shutdown is
// cancelled), as it does after a signal a moment earlier, while the VM
// was still handover-unknown. Found by a review: the shutdown waited
// for the resume and then stopped the VM, as it stops one a signal
// finds running after a resume.
func TestShutdownNotDuringResolveResume(t *testing.T) {
	v, mg := bareVM(StateHandoverUnknown), unknownMigration(transport.RoleSend)
	v.mig = mg
	if err := v.run.lock(context.Background()); err != nil { // migrate-resolve's resume, half done
		t.Fatal(err)
	}
	if _, err := v.setStateIf(StateHandoverUnknown, StatePaused); err != nil {
		t.Fatal(err)
	}
	s := v.beginShutdown(nil) // the signal, now (ServeShutdowns)
	done := make(chan bool, 1)
	go func() { done <- s.run() }()
	select {
	case <-v.stopped:
		t.Error("the shutdown stopped the VM while migrate-resolve resumed it")
	case <-time.After(100 * time.Millisecond): // a stop would come at once
	}
	res, err := resolveHeld(v, mg, api.ResolveResume) // the rest: it finds the VM paused and resumes it
	v.run.unlock()
	if err != nil || res.Side != api.SideRunning {
		t.Errorf("migrate-resolve's resume: side %s, %v: the guest runs nowhere", res.Side, err)
	}
	var cancelled bool
	select {
	case cancelled = <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("the shutdown still waits: VM %s", v.Status().State)
	}
	if st := v.Status().State; st != StateRunning || !cancelled {
		t.Errorf("VM %s after the shutdown (cancelled %v), want running: resumed here as the guest's only copy", st, cancelled)
	}
}

// resolveHeld is migrate-resolve's work on mg (resolveLocked) for a
// caller that holds the run lock as migrate-resolve's own does.
func resolveHeld(v *VM, mg *migration, action string) (api.ResolveResult, error) {
	return v.resolveLocked(mg, action, api.IDArgs{})
}

// TestShutdownDuringResolve: a shutdown whose request came before
// migrate-resolve's action on the handover-unknown VM ended, and that
// looks only after it, acts as one that waited for it: a resume here
// (either side) leaves the guest running, its only copy; discard and
// migrated let it stop the VM; a resume refused (a post-copy destination
// that lacks pages) leaves the VM handover-unknown, and the shutdown
// waits until a later action moved it. A request after the resume ended
// stops the running VM (TestShutdownResolvedBeforeLook).
func TestShutdownDuringResolve(t *testing.T) {
	for _, c := range []struct {
		role    transport.Role
		mode    string
		action  string
		then    string // a later action, while the shutdown waits
		stopped bool
	}{
		{role: transport.RoleSend, action: api.ResolveResume},
		{role: transport.RoleReceive, mode: engine.ModePrecopy, action: api.ResolveResume},
		{role: transport.RoleSend, action: api.ResolveMigrated, stopped: true},
		{role: transport.RoleReceive, mode: engine.ModePrecopy, action: api.ResolveDiscard, stopped: true},
		{role: transport.RoleReceive, mode: engine.ModePostcopy, action: api.ResolveResume, then: api.ResolveDiscard, stopped: true},
	} {
		t.Run(c.role.String()+" "+c.mode+" "+c.action, func(t *testing.T) {
			v, mg := bareVM(StateHandoverUnknown), unknownMigration(c.role)
			mg.cur.Report.Mode = c.mode
			v.mig = mg
			logs := make(chan string, 16)
			v.log = slog.New(logTap{c: logs, prefix: "shutdown"})
			s := v.beginShutdown(nil) // the signal: the resolve below holds the run lock first
			_, rerr := v.resolve(context.Background(), mg, c.action)
			done := make(chan bool, 1)
			go func() { done <- s.run() }()
			if c.then != "" {
				if rerr == nil {
					t.Fatalf("%s succeeded, want it refused", c.action)
				}
				select {
				case msg := <-logs:
					if !strings.HasPrefix(msg, "shutdown deferred") {
						t.Fatalf("logged %q, want the shutdown deferred", msg)
					}
				case <-done:
					t.Fatalf("the shutdown ended with the VM %s, still handover-unknown", v.Status().State)
				}
				_, rerr = v.resolve(context.Background(), mg, c.then)
			}
			if rerr != nil {
				t.Fatal(rerr)
			}
			var cancelled bool
			select {
			case cancelled = <-done:
			case <-time.After(5 * time.Second):
				t.Fatalf("the shutdown still waits: VM %s", v.Status().State)
			}
			if st := v.Status().State; (st == StateStopped) != c.stopped || cancelled == c.stopped {
				t.Errorf("VM %s after the shutdown (cancelled %v); want stopped: %v", st, cancelled, c.stopped)
			}
		})
	}
}

// logTap is a slog handler that sends each message that begins with
// prefix on c (dropped when full).
type logTap struct {
	c      chan string
	prefix string
}

func (l logTap) Enabled(context.Context, slog.Level) bool { return true }
func (l logTap) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l logTap) WithGroup(string) slog.Handler            { return l }
func (l logTap) Handle(_ context.Context, r slog.Record) error {
	if strings.HasPrefix(r.Message, l.prefix) {
		select {
		case l.c <- r.Message:
		default:
		}
	}
	return nil
}

// TestShutdownCancelsIncomingDuringLoad: the engine's LoadState holds
// the run lock, and a post-copy destination's may wait in a fault on a
// page the source owes until the migration is cancelled (engine
// pcRecv.loadState). The shutdown must cancel the incoming migration
// without waiting for the run lock, and stop the VM once the migration
// ended; waiting for the lock first, it would wait until the stall
// timeout failed the load.
func TestShutdownCancelsIncomingDuringLoad(t *testing.T) {
	v := bareVM(StateIncoming)
	v.mig = &migration{}
	cancelled := make(chan struct{})
	own, err := v.claim(context.Background(), v.mig, transport.RoleReceive.String(), "m1", takes(func() { close(cancelled) }),
		func(State) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	v.mig.progress(engine.Progress{Phase: engine.PhaseState, Handover: engine.HandoverReceiving})
	loading, loaded := make(chan struct{}), make(chan error)
	go func() { // the engine's LoadState, waiting in a fault until the cancel ends it
		loaded <- own.do(context.Background(), func(context.Context) error {
			close(loading)
			<-cancelled
			return context.Canceled
		})
	}()
	<-loading
	done := make(chan struct{})
	go func() { v.shutdown(); close(done) }() // as Run does on the first signal
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the shutdown did not cancel the incoming migration while its LoadState held the run lock")
	}
	if err := <-loaded; err == nil {
		t.Fatal("LoadState succeeded")
	}
	rep := engine.Report{Status: engine.StatusCancelled, Handover: engine.HandoverFailed}
	v.endMigration(own, v.mig, transport.RoleReceive, rep, context.Canceled)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the shutdown still waits after the migration ended")
	}
	if st := v.Status().State; st != StateStopped {
		t.Errorf("VM %s after the shutdown, want stopped", st)
	}
}
