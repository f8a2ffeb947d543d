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
					res, _ = mg.cancelRunning("")
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
				wg.Go(func() { res, _ = mg.cancelRunning("") })
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
			raw, err := json.Marshal(args)
			if err != nil {
				t.Fatal(err)
			}
			mg := &migration{}
			startErr := make(chan error, 1)
			go func() {
				_, err := v.startMigration(context.Background(), mg, raw, tc.role)
				startErr <- err
			}()
			started()
			res, _ := mg.cancelRunning("")
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
			if got := v.Status().State; got != state {
				t.Errorf("the VM is %s; want %s, untouched", got, state)
			}
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

// TestIncomingAgainAfterCancelDuringPluginStart: a destination whose
// migrate-incoming was cancelled while its transport plugin started
// ends cancelled, stays in incoming state with its VM untouched (the
// engine never ran: no byte reached guest RAM), and takes the next
// migrate-incoming, which migrate's Ctrl-C leaves it for
// (cmd/migrate TestRunIncomingInterruptedCancelled); a destination
// cancelled once its engine ran exits instead (migrationDone).
func TestIncomingAgainAfterCancelDuringPluginStart(t *testing.T) {
	v := fakeWithRAM(t, StateIncoming)
	slow, started := slowPlugin(t)
	raw, err := json.Marshal(api.MigrateArgs{Plugin: slow})
	if err != nil {
		t.Fatal(err)
	}
	mg := &migration{}
	for try := 1; try <= 2; try++ {
		startErr := make(chan error, 1)
		go func() {
			_, err := v.startMigration(context.Background(), mg, raw, transport.RoleReceive)
			startErr <- err
		}()
		started() // taken: its transport plugin runs
		if res, _ := mg.cancelRunning(""); !res.Cancelled {
			t.Fatalf("try %d: migrate-cancel during the plugin's start answered %+v; want cancelled", try, res)
		}
		select {
		case <-startErr:
		case <-time.After(30 * time.Second):
			t.Fatalf("try %d: migrate-incoming did not return within 30 s of the cancel", try)
		}
		st := mg.status()
		if !st.Done || st.Report == nil || st.Report.Status != engine.StatusCancelled {
			t.Fatalf("try %d: the migration is %+v; want done, cancelled", try, st)
		}
		if got := v.Status().State; got != StateIncoming {
			t.Fatalf("try %d: the VM is %s; want %s", try, got, StateIncoming)
		}
	}
	v.plugins.Wait()
}
