package vmm

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/vmm/api"
)

// raceCommands are the control commands that would change the run state,
// start a migration or end a handover; none may get through while a
// migration owns the VM.
func raceCommands(dir string) map[string]any {
	bad := api.MigrateArgs{Plugin: "/nonexistent/ferry-transport-x"}
	return map[string]any{
		"pause": nil, "resume": nil, "quit": nil,
		"state-save": map[string]string{"path": filepath.Join(dir, "s")}, "state-load": map[string]string{"path": filepath.Join(dir, "s")},
		"migrate-send": bad, "migrate-incoming": bad,
		"migrate-resolve resume": api.ResolveArgs{Action: api.ResolveResume}, "migrate-resolve discard": api.ResolveArgs{Action: api.ResolveDiscard},
		"migrate-resolve migrated": api.ResolveArgs{Action: api.ResolveMigrated},
	}
}

// racePhase puts a fake VM into one phase of a migration that owns it,
// through the owner as the engine does, and returns the state it is in.
type racePhase struct {
	role     transport.Role
	name     string
	progress engine.Progress
	enter    func(m migrationVM) error
	want     State
}

var racePhases = []racePhase{
	{transport.RoleSend, "pre-copy", engine.Progress{Phase: engine.PhaseDirty, Handover: engine.HandoverLive, Mode: engine.ModePrecopy},
		func(migrationVM) error { return nil }, StateRunning},
	{transport.RoleSend, "switch-over", engine.Progress{Phase: engine.PhaseStop, Handover: engine.HandoverSwitchover, Mode: engine.ModePrecopy},
		func(m migrationVM) error { return m.Pause(context.Background()) }, StatePaused},
	{transport.RoleSend, "committing", engine.Progress{Phase: engine.PhaseState, Handover: engine.HandoverCommitting, Mode: engine.ModePrecopy},
		func(m migrationVM) error { return m.Pause(context.Background()) }, StatePaused},
	{transport.RoleSend, "post-copy", engine.Progress{Phase: engine.PhasePostcopy, Handover: engine.HandoverPostcopy, Mode: engine.ModePostcopy},
		func(m migrationVM) error { return m.Pause(context.Background()) }, StatePaused},
	{transport.RoleReceive, "receiving", engine.Progress{Phase: engine.PhaseBulk, Handover: engine.HandoverReceiving, Mode: engine.ModePrecopy},
		func(migrationVM) error { return nil }, StateIncoming},
	{transport.RoleReceive, "loaded", engine.Progress{Phase: engine.PhaseState, Handover: engine.HandoverLoaded, Mode: engine.ModePrecopy},
		loadFake, StatePaused},
	{transport.RoleReceive, "post-copy", engine.Progress{Phase: engine.PhasePostcopy, Handover: engine.HandoverPostcopy, Mode: engine.ModePostcopy},
		func(m migrationVM) error {
			if err := loadFake(m); err != nil {
				return err
			}
			return m.Resume()
		}, StateRunning},
}

// loadFake is the engine's LoadState on a fake incoming VM.
func loadFake(m migrationVM) error {
	return m.own.do(context.Background(), func(context.Context) error {
		_, err := m.v.setStateIf(StateIncoming, StatePaused)
		return err
	})
}

// TestCommandsRaceMigration: in each phase of a migration, on either
// side, two control connections fire every command that would change
// the run state, start another migration or resolve a handover, all at
// once and in a different order: every one is refused, and the VM stays
// as the migration left it, still owned by it.
func TestCommandsRaceMigration(t *testing.T) {
	for _, ph := range racePhases {
		t.Run(ph.role.String()+"/"+ph.name, func(t *testing.T) {
			v := fakeVM(StateRunning)
			if ph.role == transport.RoleReceive {
				v = fakeVM(StateIncoming)
				v.cfg.Incoming = true
				v.gate.Pause(context.Background()) // as startIncoming
			}
			call := serveFake(t, v)
			own, err := v.claim(context.Background(), v.mig, ph.role.String(), "id", takes(func() {}),
				func(st State) error { return v.canMigrate(ph.role, st) })
			if err != nil {
				t.Fatal(err)
			}
			v.mig.progress(ph.progress)
			if err := ph.enter(migrationVM{v: v, own: own}); err != nil {
				t.Fatal(err)
			}
			cmds := raceCommands(t.TempDir())
			var wg sync.WaitGroup
			var mu sync.Mutex
			var through []string
			for range 2 {
				wg.Go(func() {
					for range 5 {
						for name, args := range cmds { // map order: a different order each time
							cmd := name
							if len(cmd) > 15 && cmd[:15] == "migrate-resolve" {
								cmd = "migrate-resolve"
							}
							if err := call(cmd, args); err == nil {
								mu.Lock()
								through = append(through, name)
								mu.Unlock()
							}
						}
					}
				})
			}
			wg.Wait()
			if len(through) > 0 {
				t.Errorf("went through while migrating: %q", through)
			}
			if st := v.Status().State; st != ph.want {
				t.Errorf("VM %s, want %s", st, ph.want)
			}
			if paused := ph.want != StateRunning; v.gate.Paused() != paused {
				t.Errorf("gate paused %v in state %s", v.gate.Paused(), v.Status().State)
			}
			if v.owner != own {
				t.Error("the migration no longer owns the VM")
			}
			own.release(nil)
		})
	}
}

// TestResolveRace: a handover left unknown, and two connections that
// resolve it opposite ways at the same moment (resume here against
// discard, or against migrated): exactly one wins, and the VM is in the
// state of that one.
func TestResolveRace(t *testing.T) {
	for _, c := range []struct {
		role  transport.Role
		other string
		state State
	}{
		{transport.RoleSend, api.ResolveMigrated, StateMigrated},
		{transport.RoleReceive, api.ResolveDiscard, StateDiscarded},
	} {
		for i := range 20 {
			v := fakeVM(StateRunning)
			enter := racePhases[1] // the source paused for its switch-over
			if c.role == transport.RoleReceive {
				v = fakeVM(StateIncoming)
				v.cfg.Incoming = true
				v.gate.Pause(context.Background())
				enter = racePhases[5] // the destination loaded
			}
			call := serveFake(t, v)
			own, err := v.claim(context.Background(), v.mig, c.role.String(), "id", takes(func() {}),
				func(st State) error { return v.canMigrate(c.role, st) })
			if err != nil {
				t.Fatal(err)
			}
			if err := enter.enter(migrationVM{v: v, own: own}); err != nil {
				t.Fatal(err)
			}
			rep := engine.Report{Status: engine.StatusHandoverUnknown, Handover: engine.HandoverUnknown, Mode: engine.ModePrecopy}
			own.release(func() {
				v.migrationDone(c.role, api.SideUnknown, engine.ErrHandoverUnknown, func() { v.mig.finish(rep, api.SideUnknown) })
			})
			errs := make([]error, 2)
			var wg sync.WaitGroup
			for j, action := range []string{api.ResolveResume, c.other} {
				wg.Go(func() { errs[j] = call("migrate-resolve", api.ResolveArgs{Action: action}) })
			}
			wg.Wait()
			if (errs[0] == nil) == (errs[1] == nil) {
				t.Fatalf("%s, round %d: resume: %v; %s: %v; want exactly one through", c.role, i, errs[0], c.other, errs[1])
			}
			want := StateRunning
			if errs[0] != nil {
				want = c.state
			}
			if st := v.Status().State; st != want || v.gate.Paused() != (want != StateRunning) {
				t.Fatalf("%s, round %d: VM %s (gate paused %v), want %s", c.role, i, st, v.gate.Paused(), want)
			}
		}
	}
}
