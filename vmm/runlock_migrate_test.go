package vmm

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/bitmap"
	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/schema"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/transport/loopback"
	"github.com/ferryvm/ferry/vmm/memory"
)

// Migrations without KVM: the real engine over an in-process transport,
// between fake VMs whose run state goes through the real run lock, gate
// and migrationVM; only the dirty log and the state blob are faked (they
// need KVM). vmm/e2e's TestMigrateUnderControlSpam does the same with
// real VMMs.

// lockSource is a fake VM as the engine's source.
type lockSource struct{ migrationVM }

// StartDirtyLog, SyncDirtyLog and StopDirtyLog: nothing is ever dirty.
func (s lockSource) StartDirtyLog() error                  { return nil }
func (s lockSource) SyncDirtyLog(dst *bitmap.Bitmap) error { return nil }
func (s lockSource) StopDirtyLog() error                   { return nil }

// SaveState checks, under the lock, that the VM is paused for real, and
// takes a moment, as saving vCPUs does.
func (s lockSource) SaveState(ctx context.Context) ([]byte, error) {
	err := s.own.do(ctx, func(context.Context) error {
		if st := s.v.Status().State; st != StatePaused || !s.v.gate.Paused() {
			return fmt.Errorf("save state of a VM that is %s (gate paused %v)", st, s.v.gate.Paused())
		}
		time.Sleep(time.Millisecond)
		return nil
	})
	return []byte("state"), err
}

// lockTarget is a fake incoming VM as the engine's target.
type lockTarget struct{ migrationVM }

// LoadState makes the incoming VM paused, as loading a state does.
func (t lockTarget) LoadState(ctx context.Context, _ []byte) error {
	return t.own.do(ctx, func(context.Context) error {
		t.v.setStateIf(StateIncoming, StatePaused)
		return nil
	})
}

// fakeWithRAM is fakeVM with 16 MiB of guest RAM.
func fakeWithRAM(t *testing.T, st State) *VM {
	v := fakeVM(st)
	v.cfg.Memory = memory.MinSize
	mem, err := memory.New(memory.MinSize)
	if err != nil {
		t.Fatal(err)
	}
	v.mem = mem
	t.Cleanup(func() { mem.Close() })
	if st == StateIncoming {
		v.cfg.Incoming = true
		v.gate.Pause(context.Background()) // as startIncoming: no vCPU, returns at once
	}
	return v
}

// migrateFakes migrates src to dst through the run lock as startMigration
// does and returns the source's report.
func migrateFakes(t *testing.T, src, dst *VM) engine.Report {
	return migrateFakesWith(t, src, dst, nil, nil).srep
}

// progressHook runs in a side's progress report, on its engine's
// goroutine, before the report reaches the side's migration (what
// migrate-status and migrate-cancel see).
type progressHook func(mg *migration, p engine.Progress)

// fakeRun is how migrateFakesWith's migration ended.
type fakeRun struct {
	smg, dmg   *migration
	srep, drep engine.Report
}

// migrateFakesWith migrates src to dst through the run lock as
// startMigration does, each side under an engine.Cancel that its
// migration's migrate-cancel (cancelRunning) uses, with onSrc and onDst
// (if not nil) hooked into the sides' progress reports.
func migrateFakesWith(t *testing.T, src, dst *VM, onSrc, onDst progressHook) fakeRun {
	tr, _ := loopback.NewPipe()
	sch, _ := tr.Schema(context.Background())
	cfg, err := schema.Coerce(sch, map[string]any{})
	if err != nil {
		t.Fatal(err)
	}
	send, recv := loopback.NewPipe()
	srcCreds, dstCreds, err := transport.MintCredentials(false)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sctx, sc := engine.NewCancel(ctx)
	dctx, dc := engine.NewCancel(ctx)
	run := fakeRun{smg: &migration{}, dmg: &migration{}}
	down, err := dst.claim(ctx, run.dmg, "receive", "", cancelWith(dc), func(st State) error { return dst.canMigrate(transport.RoleReceive, st) })
	if err != nil {
		t.Fatalf("claim destination: %v", err)
	}
	var sown *migrationOwner
	for attempt := 0; ; attempt++ { // a pause from the spam may have landed first
		sown, err = src.claim(ctx, run.smg, "send", "", cancelWith(sc), func(st State) error { return src.canMigrate(transport.RoleSend, st) })
		if err == nil {
			break
		}
		if attempt == 1000 {
			t.Fatalf("claim source: %v", err)
		}
		src.Resume()
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		opt := engine.Options{Transport: cfg, Progress: hooked(run.dmg, onDst), Credentials: dstCreds}
		rep, err := engine.Receive(dctx, lockTarget{migrationVM{v: dst, own: down}}, recv, opt)
		recv.Close()
		dst.endMigration(down, run.dmg, transport.RoleReceive, rep, err)
		run.drep = rep
	})
	opt := engine.Options{Transport: cfg, Progress: hooked(run.smg, onSrc), MaxDowntime: time.Second, Credentials: srcCreds}
	rep, err := engine.Send(sctx, lockSource{migrationVM{v: src, own: sown}}, send, opt)
	send.Close()
	src.endMigration(sown, run.smg, transport.RoleSend, rep, err)
	run.srep = rep
	wg.Wait()
	if ctx.Err() != nil {
		t.Fatalf("migration hung (cancelled after 20 s): %+v", rep)
	}
	return run
}

// hooked is mg's progress with h run first.
func hooked(mg *migration, h progressHook) func(engine.Progress) {
	return func(p engine.Progress) {
		if h != nil {
			h(mg, p)
		}
		mg.progress(p)
	}
}

// spamRunState calls Pause and Resume on v, as the control commands do,
// until stop is closed.
func spamRunState(v *VM, stop chan struct{}, wg *sync.WaitGroup) {
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if rand.IntN(2) == 0 {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				v.Pause(ctx)
				cancel()
			} else {
				v.Resume()
			}
			time.Sleep(time.Duration(rand.IntN(200)) * time.Microsecond)
		}
	})
}

// spamControl sends pause and resume through a control socket (call,
// from serveFake) until stop is closed.
func spamControl(call func(cmd string, args any) error, stop chan struct{}, wg *sync.WaitGroup) {
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			cmd := "resume"
			if rand.IntN(2) == 0 {
				cmd = "pause"
			}
			call(cmd, nil)
			time.Sleep(time.Duration(rand.IntN(200)) * time.Microsecond)
		}
	})
}

// TestMigrationsUnderRunStateSpam migrates a fake VM along a chain while
// two goroutines per VM pause and resume it, one in process and one
// through the control socket: every migration ends, within
// a bound, completed with the source migrated and paused for good and the
// destination running, or failed with the source running and the
// destination stopped. Without the run lock a resume after the engine's
// pause left the source running after "completed" (check it by letting
// outside ignore v.owner).
func TestMigrationsUnderRunStateSpam(t *testing.T) {
	n := 50 // ~3.5 s on an idle machine; without the lock the first few fail already
	if testing.Short() {
		n = 20
	}
	src := fakeWithRAM(t, StateRunning)
	completed := 0
	for i := 0; i < n; i++ {
		dst := fakeWithRAM(t, StateIncoming)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for _, v := range []*VM{src, dst} {
			spamRunState(v, stop, &wg)
			spamControl(serveFake(t, v), stop, &wg)
		}
		rep := migrateFakes(t, src, dst)
		close(stop)
		wg.Wait()
		if rep.Status != "completed" {
			t.Logf("migration %d %s: %s", i, rep.Status, rep.Error)
			if st := dst.Status().State; st != StateStopped {
				t.Fatalf("migration %d %s, the destination is %s", i, rep.Status, st)
			}
			src.Resume() // a pause from the spam may have landed after the end
			if st := src.Status().State; st != StateRunning || src.gate.Paused() {
				t.Fatalf("migration %d %s, the source is %s (gate paused %v)", i, rep.Status, st, src.gate.Paused())
			}
			continue
		}
		completed++
		if st := src.Status().State; st != StateMigrated || !src.gate.Paused() {
			t.Fatalf("migration %d completed, but the source is %s (gate paused %v): the guest runs twice",
				i, st, src.gate.Paused())
		}
		dst.Resume() // a pause from the spam may have landed after the end
		if st := dst.Status().State; st != StateRunning || dst.gate.Paused() {
			t.Fatalf("migration %d completed, but the destination is %s (gate paused %v)", i, st, dst.gate.Paused())
		}
		src = dst
	}
	if completed < n/2 {
		t.Errorf("only %d of %d migrations completed", completed, n)
	}
}
