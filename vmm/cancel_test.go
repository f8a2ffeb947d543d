package vmm

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/transport/transporttest"
	"github.com/ferryvm/ferry/vmm/api"
)

// TestCancelAnswerIsExact: migrate-cancel asked in a progress report, on
// the engine's goroutine before the report reaches migrate-status, gets
// the answer of what then happens. On the source in its committing
// report (the engine held a moment before: the last progress still says
// switch-over) it is refused, committing, and the migration completes;
// in its switch-over report it takes, and the guest runs on the source.
// On the destination as it loaded the state it takes (ABORT: the source
// resumes); in its last report after COMMIT ran the guest there it is
// refused. Before, the answer came from the last progress report: a
// cancel right after the engine's hold was answered cancelled, and the
// migration completed on the destination.
func TestCancelAnswerIsExact(t *testing.T) {
	for _, tc := range []struct {
		name      string
		onDst     bool
		at        engine.Handover
		cancelled bool
		why       string
	}{
		{"source switch-over", false, engine.HandoverSwitchover, true, ""},
		{"source held", false, engine.HandoverCommitting, false, "COMMIT is going or has gone out"},
		{"destination loaded", true, engine.HandoverLoaded, true, ""},
		{"destination running", true, engine.HandoverRunning, false, "COMMIT arrived: the guest runs here"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, dst := fakeWithRAM(t, StateRunning), fakeWithRAM(t, StateIncoming)
			var res api.CancelResult
			asked := false
			hook := func(mg *migration, p engine.Progress) {
				if p.Handover == tc.at && !asked {
					asked = true
					res, _ = mg.cancelRunning(api.IDArgs{})
				}
			}
			var run fakeRun
			if tc.onDst {
				run = migrateFakesWith(t, src, dst, nil, hook)
			} else {
				run = migrateFakesWith(t, src, dst, hook, nil)
			}
			if !asked {
				t.Fatalf("no progress report said %s", tc.at)
			}
			if res.Cancelled != tc.cancelled || !strings.Contains(res.Why, tc.why) {
				t.Errorf("migrate-cancel answered %+v, want cancelled %v and %q", res, tc.cancelled, tc.why)
			}
			checkCancelAnswer(t, res, run, src, dst)
		})
	}
}

// TestCancelAnswerRaces: migrate-cancel asked on its own goroutine from
// the source's switch-over report (it races the pause, the state, LOADED
// and the hold) or the destination's loaded report (it races COMMIT):
// whatever it answers, the migration ends that way, every time.
func TestCancelAnswerRaces(t *testing.T) {
	var cancelled, refused, late int
	for i := 0; i < 20; i++ {
		src, dst := fakeWithRAM(t, StateRunning), fakeWithRAM(t, StateIncoming)
		var wg sync.WaitGroup
		var res api.CancelResult
		at := engine.HandoverSwitchover
		if i%2 == 1 {
			at = engine.HandoverLoaded
		}
		asked := false
		hook := func(mg *migration, p engine.Progress) {
			if p.Handover == at && !asked {
				asked = true
				wg.Go(func() { res, _ = mg.cancelRunning(api.IDArgs{}) })
			}
		}
		var run fakeRun
		if at == engine.HandoverLoaded {
			run = migrateFakesWith(t, src, dst, nil, hook)
		} else {
			run = migrateFakesWith(t, src, dst, hook, nil)
		}
		wg.Wait()
		if !asked {
			t.Fatalf("run %d: no progress report said %s", i, at)
		}
		if res.Why == "no migration is running" {
			late++ // a loaded machine ran the goroutine after the end: nothing to check
			continue
		}
		checkCancelAnswer(t, res, run, src, dst)
		if t.Failed() {
			t.Fatalf("run %d (asked at %s): %+v", i, at, res)
		}
		if res.Cancelled {
			cancelled++
		} else {
			refused++
		}
	}
	t.Logf("cancelled %d, refused %d, after the end %d", cancelled, refused, late)
}

// checkCancelAnswer says whether the migration ended as migrate-cancel's
// answer res said: cancelled, and the guest runs on the source only; or
// refused (committing, not post-copy here), and the migration completed,
// the guest running on the destination only.
func checkCancelAnswer(t *testing.T, res api.CancelResult, run fakeRun, src, dst *VM) {
	t.Helper()
	sst, dstate := src.Status().State, dst.Status().State
	switch {
	case res.Cancelled && (run.srep.Status == engine.StatusCompleted || run.drep.Status == engine.StatusCompleted):
		t.Errorf("answered cancelled, but the migration completed (source %s, destination %s)", run.srep.Status, run.drep.Status)
	case res.Cancelled && (sst != StateRunning || dstate == StateRunning):
		t.Errorf("answered cancelled, but the source is %s and the destination %s", sst, dstate)
	case !res.Cancelled && (!res.Committing || res.Postcopy):
		t.Errorf("refused as %+v; want committing (pre-copy)", res)
	case !res.Cancelled && (run.srep.Status != engine.StatusCompleted || run.drep.Status != engine.StatusCompleted):
		t.Errorf("refused, but the migration ended: source %s (%s), destination %s (%s)",
			run.srep.Status, run.srep.Error, run.drep.Status, run.drep.Error)
	case !res.Cancelled && (sst != StateMigrated || dstate != StateRunning):
		t.Errorf("refused, but the source is %s and the destination %s", sst, dstate)
	}
}

// TestCancelDuringPluginStart: a migrate-cancel that arrives while the
// VMM still starts the migration's plugins (the transport plugin's
// process, before its handshake; on the source, a hint provider being
// started and configured) takes, and the migration ends cancelled: the
// source's guest runs on, the destination's VM is never touched. Before,
// a cancel during the transport's start was recorded failed, although
// migrate-cancel had answered cancelled.
func TestCancelDuringPluginStart(t *testing.T) {
	for _, tc := range []struct {
		name   string
		role   transport.Role
		hinted bool // the transport runs in process; a hint provider starts slowly
	}{
		{"source, transport starting", transport.RoleSend, false},
		{"destination, transport starting", transport.RoleReceive, false},
		{"source, hint provider starting", transport.RoleSend, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			state := StateRunning
			if tc.role == transport.RoleReceive {
				state = StateIncoming
			}
			v := fakeWithRAM(t, state)
			slow, started := slowPlugin(t)
			args := api.MigrateArgs{Plugin: slow}
			if tc.hinted {
				v.cfg.TransportInProcess = true
				args.Plugin = "/opt/ferry/plugins/" + tcpPlugin
				args.Transport = map[string]any{"listen": "127.0.0.1:1", "connect": "127.0.0.1:1"}
				args.Hints = []api.HintArgs{{Name: "slow", Plugin: slow}}
			}
			mg := &migration{}
			startErr := startAsync(t, v, mg, args, tc.role)
			started()
			res, _ := mg.cancelRunning(api.IDArgs{})
			if !res.Cancelled {
				t.Fatalf("migrate-cancel during the plugins' start answered %+v; want cancelled", res)
			}
			var serr error
			select {
			case serr = <-startErr:
			case <-time.After(30 * time.Second):
				t.Fatal("migrate-send did not return within 30 s of the cancel")
			}
			var st *api.Migration
			select {
			case <-mg.done:
				st = mg.status()
			case <-time.After(30 * time.Second):
				t.Fatal("the migration did not end within 30 s of the cancel")
			}
			v.plugins.Wait() // the session's teardown: every plugin process gone
			if st.Report == nil || st.Report.Status != engine.StatusCancelled {
				t.Fatalf("the migration ended %+v (migrate-%s: %v); want cancelled", st.Report, tc.role, serr)
			}
			t.Logf("migrate-%s: %v; ended %s, side %s: %s", tc.role, serr, st.Report.Status, st.Side, st.Report.Error)
			if got := v.Status().State; tc.role == transport.RoleSend && got != state {
				t.Errorf("the VM is %s; want %s, untouched", got, state)
			} // a destination exits: TestCancelledDestinationExits
			if tc.role == transport.RoleSend && st.Side != api.SideRunning {
				t.Errorf("the source's side is %s; want running", st.Side)
			}
		})
	}
}

// slowPlugin writes a plugin that never answers its host's handshake
// (as a plugin whose start is slow) and returns its path and started,
// which waits until a process of it runs.
func slowPlugin(t *testing.T) (path string, started func()) {
	t.Helper()
	dir := t.TempDir()
	fifo := filepath.Join(dir, "started")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(dir, "ferry-plugin-slow")
	script := "#!/bin/sh\necho started > '" + fifo + "'\nexec sleep 60\n"
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path, func() {
		t.Helper()
		got := make(chan error, 1)
		go func() { _, err := os.ReadFile(fifo); got <- err }() // until the plugin opened and wrote it
		select {
		case err := <-got:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("the plugin did not start within 30 s")
		}
	}
}

// TestCancelledDestinationExits: a destination whose migrate-incoming
// is cancelled ends the same way whenever the cancel came: while its
// transport plugin started (the engine never ran) or once its engine
// waits for a source. Either way the migration is recorded cancelled
// and the VMM exits (the VM stopped, exit code 1), as after any failed
// incoming migration (migrationDone). Before, one cancelled during the
// plugin's start stayed up in incoming state and one cancelled later
// exited. A migrate-incoming whose plugin does not start for another
// reason still leaves the VM incoming (TestIncomingAfterFailedStart).
func TestCancelledDestinationExits(t *testing.T) {
	for _, early := range []bool{true, false} {
		name := map[bool]string{true: "transport starting", false: "engine waiting for a source"}[early]
		t.Run(name, func(t *testing.T) {
			v := fakeWithRAM(t, StateIncoming)
			args := api.MigrateArgs{}
			var started func()
			if early {
				args.Plugin, started = slowPlugin(t)
			} else {
				_, dc, err := transport.MintCredentials(false)
				if err != nil {
					t.Fatal(err)
				}
				v.cfg.TransportInProcess = true
				args.Plugin, args.Credentials = "/opt/ferry/plugins/"+tcpPlugin, &dc
				args.Transport = map[string]any{"listen": freeAddr(t)}
			}
			mg := &migration{}
			startErr := startAsync(t, v, mg, args, transport.RoleReceive)
			if early {
				started() // taken: its transport plugin runs
			} else if err := <-startErr; err != nil {
				t.Fatalf("migrate-incoming: %v", err) // answered: the engine runs
			}
			if res, _ := mg.cancelRunning(api.IDArgs{}); !res.Cancelled {
				t.Fatalf("migrate-cancel answered %+v; want cancelled", res)
			}
			if early {
				select {
				case <-startErr:
				case <-time.After(30 * time.Second):
					t.Fatal("migrate-incoming did not return within 30 s of the cancel")
				}
			}
			select {
			case <-mg.done:
			case <-time.After(30 * time.Second):
				t.Fatal("the migration did not end within 30 s of the cancel")
			}
			select {
			case <-v.stopped:
			case <-time.After(30 * time.Second):
				t.Fatalf("the VMM did not exit within 30 s of the cancel; the VM is %s", v.Status().State)
			}
			v.plugins.Wait()
			st := mg.status()
			if st.Report == nil || st.Report.Status != engine.StatusCancelled || st.Side != api.SideFailed {
				t.Errorf("the migration ended %+v, side %s; want cancelled, failed", st.Report, st.Side)
			}
			if got := v.Status().State; got != StateStopped || v.exitCode != 1 {
				t.Errorf("the VM is %s, exit code %d (%v); want stopped, 1", got, v.exitCode, v.exitErr)
			}
			t.Logf("exit %d: %v", v.exitCode, v.exitErr)
		})
	}
}

// freeAddr is a loopback address whose port nothing listens on now,
// below the ephemeral range where there is room (transporttest.FreeAddr).
func freeAddr(t *testing.T) string {
	t.Helper()
	return transporttest.FreeAddr(t, "127.0.0.1")
}

// TestIncomingAfterFailedStart: a migrate-incoming whose transport
// plugin cannot start (a missing binary) fails the command, records a
// failed migration and leaves the VM in incoming state, untouched, for
// a next migrate-incoming: nothing was cancelled, and the next try may
// fix the arguments.
func TestIncomingAfterFailedStart(t *testing.T) {
	v := fakeWithRAM(t, StateIncoming)
	mg := &migration{}
	raw, _ := json.Marshal(api.MigrateArgs{Plugin: "/nonexistent/ferry-transport-x"})
	if _, err := v.startMigration(context.Background(), mg, raw, transport.RoleReceive); err == nil {
		t.Fatal("migrate-incoming with a missing plugin went through")
	}
	if st := mg.status(); st == nil || !st.Done || st.Report == nil || st.Report.Status != engine.StatusFailed {
		t.Errorf("migration after the failed start: %+v", st)
	}
	if got := v.Status().State; got != StateIncoming {
		t.Errorf("the VM is %s after the failed start; want %s", got, StateIncoming)
	}
	own, err := v.claim(context.Background(), &migration{}, transport.RoleReceive.String(), "", takes(func() {}),
		func(st State) error { return v.canMigrate(transport.RoleReceive, st) })
	if err != nil {
		t.Fatalf("a next migrate-incoming is refused: %v", err)
	}
	own.release(func() {})
}

// startAsync starts migration mg with args in role on its own goroutine,
// as migrate-send or migrate-incoming does; the channel gets
// startMigration's error when it returns.
func startAsync(t *testing.T, v *VM, mg *migration, args api.MigrateArgs, role transport.Role) <-chan error {
	t.Helper()
	raw, err := json.Marshal(args)
	if err != nil {
		t.Fatal(err)
	}
	startErr := make(chan error, 1)
	go func() {
		_, err := v.startMigration(context.Background(), mg, raw, role)
		startErr <- err
	}()
	return startErr
}
