package vmm

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/vmm/internal/ctxlock"
)

// The run lock serialises every change to the VM's run state: pause,
// resume, quit, state-save and state-load, from the control socket, from
// in-process callers of the exported methods, and from a migration (and
// the control commands' own changes to what a migration carries,
// balloon-stats's write to guest RAM and balloon's new target: they
// land before a migration's pause, or are refused: balloonChange). A
// migration owns the VM from the moment migrate-send or migrate-incoming
// is accepted until it has finished; while it does, only its owner
// changes the run state and everybody else is refused:
//
//	control: pause, resume, quit,      v.outside(ctx, cmd, fn)
//	state-save, state-load;            refused while a migration owns the
//	VM.Pause/Resume/SaveState/...      VM, or once it was handed over
//	                      │
//	                      ▼
//	                 run lock (one holder) ──► pause / resume / stop /
//	                      ▲                    save / load
//	                      │
//	engine via migrationVM ── owner.do(ctx, fn)
//	                             ▲
//	                             │ claim (migrate-send, migrate-incoming)
//	                             │ ... release (the migration finished)
//	resolving a migration's end ── v.runLocked(ctx, fn), or the owner's do
//	                               if the migration kept its hold
//
// The check and the change happen under the same lock, so a resume that
// passed the check has finished before a migration can claim the VM, and
// a resume that comes later is refused, not queued behind the engine's
// pause. Holders are bounded: a control command by its handler's
// deadline, a pause by pauseTimeout, the engine's calls by its own.
//
// Lock order: state-save's file lock (state_file.go) before the run
// lock, then the lock of saves and loads (lockState), then v.mu or a
// migration's mu; never wait for the run lock while holding either of
// the last two (a command that decides a migration's end takes the run
// lock through runLocked, then looks at the migration). No file is read
// or written under the run lock: state-save writes after it, state-load
// reads before it.
//
// Not covered: the guest powering off or failing, and Stop (the VM
// stops whatever the lock says): they end the VM, they do not run it
// twice. The process's own shutdown (SIGTERM) decides and stops under
// the lock (shutdown.go). A source VMM that is killed mid-migration
// leaves its destination to the migration's own timeouts.

// runLock is a mutex that can be waited for under a context.
type runLock struct{ m ctxlock.Mutex }

func newRunLock() runLock { return runLock{ctxlock.New()} }

// lock takes the run lock or fails when ctx ends first (a free lock is
// taken even under an ended ctx).
func (l runLock) lock(ctx context.Context) error {
	if err := l.m.LockContext(ctx); err != nil {
		return fmt.Errorf("another pause, resume or state change is still running: %w", err)
	}
	return nil
}

func (l runLock) unlock() { l.m.Unlock() }

// outside runs fn, a run-state change asked for by anybody but a
// migration (cmd names it in errors), under the run lock. It is refused
// while a migration owns the VM and in the states stateRefusal names
// (lifecycle.go).
// fn must use the unexported pause, resume, saveState and loadState: the
// exported ones take the run lock themselves.
func (v *VM) outside(ctx context.Context, cmd string, fn func(context.Context) error) error {
	if err := v.run.lock(ctx); err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	defer v.run.unlock()
	if v.owner != nil {
		return v.owner.refuse(cmd)
	}
	if err := stateRefusal(v.Status().State, cmd); err != nil {
		return err
	}
	return fn(ctx)
}

// runLocked runs fn under the run lock with no check of its own, for a
// command that decides by itself whether it may change the run state
// (one that resolves how a migration ended). It fails only when ctx ends
// before the lock is free. Like outside's fn, fn must not call the
// exported Pause, Resume, SaveState or LoadState.
func (v *VM) runLocked(ctx context.Context, fn func(ctx context.Context, owner *migrationOwner) error) error {
	if err := v.run.lock(ctx); err != nil {
		return err
	}
	defer v.run.unlock()
	return fn(ctx, v.owner)
}

// migrationOwner is a migration's hold on the VM's run state, from claim
// to release. Its methods may be called from any goroutine.
type migrationOwner struct {
	v  *VM
	mg *migration // says what the migration is doing, for refusals
	// resumed: the engine's Resume ran the VM again after its Pause
	// (migrationVM.Resume). Written and read under the run lock: a
	// source whose migration failed ran the guest after the pause even
	// if its VM stopped since (sideAfter).
	resumed bool
	// linger tells when the migration's post-copy ended here, on a
	// destination, and ends the engine's wait to tell the source how
	// (linger.go).
	linger lingerEnd
	// resumeFailed: the engine's Resume failed (migrationVM.Resume). On
	// a destination that is its Resume at COMMIT: the guest never ran
	// here, and the engine fails the migration, telling the source
	// (ABORT), although it held for post-copy (migrate-cancel says so:
	// cancelRunning). Read without the run lock.
	resumeFailed atomic.Bool
}

// errNotOwner is what an owner's do returns after release.
var errNotOwner = errors.New("the migration no longer owns the VM")

// claim makes a new migration the owner of v's run state. Under the run
// lock it checks that no migration owns the VM and that check (the
// role's precondition on the VM's state) passes, then registers the
// migration in mg (cancel cancels it; id is its api.MigrateArgs.ID) and
// returns the owner. ctx bounds
// the wait for a run-state change in progress.
func (v *VM) claim(ctx context.Context, mg *migration, role, id string, cancel canceller, check func(State) error) (*migrationOwner, error) {
	if err := v.run.lock(ctx); err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	defer v.run.unlock()
	if v.owner != nil {
		return nil, v.owner.refuse("migrate-" + role)
	}
	if err := check(v.Status().State); err != nil {
		return nil, err
	}
	if err := mg.begin(role, id, cancel); err != nil {
		return nil, err
	}
	v.owner = &migrationOwner{v: v, mg: mg}
	mg.mu.Lock()
	mg.own = v.owner
	mg.mu.Unlock()
	return v.owner, nil
}

// do runs fn, a run-state change of the owning migration (the engine's
// pause, resume, save and load; a resolve command's decision), under the
// run lock. It fails with errNotOwner after release, and when ctx ends
// before the lock was free.
func (o *migrationOwner) do(ctx context.Context, fn func(context.Context) error) error {
	if err := o.v.run.lock(ctx); err != nil {
		return err
	}
	defer o.v.run.unlock()
	if o.v.owner != o {
		return errNotOwner
	}
	return fn(ctx)
}

// release ends the ownership, after which the control commands work
// again. fn, if not nil, runs under the run lock first, still as the
// owner: the migration's last word (the VM's final state, the report) and
// the release are one step, so nobody sees the report without the final
// state or slips a resume in between. Releasing twice is harmless.
func (o *migrationOwner) release(fn func()) {
	o.v.run.lock(context.Background()) // every holder is bounded (see above)
	defer o.v.run.unlock()
	if o.v.owner != o {
		return
	}
	if fn != nil {
		fn()
	}
	o.v.owner = nil
}

// refuse is the error for cmd while o owns the VM.
func (o *migrationOwner) refuse(cmd string) error {
	role, phase := o.doing()
	return fmt.Errorf("the VM is migrating (%s, phase %s): %s is refused; migrate-cancel is the only way out", role, phase, cmd)
}

// live reports whether o sends the VM and it runs (a live pass): a
// write to guest RAM now is seen by the migration's next dirty-log
// sync, which comes after its pause. The caller holds the run lock.
func (o *migrationOwner) live() bool {
	st := o.mg.status()
	return st != nil && st.Role == transport.RoleSend.String() && o.v.Status().State == StateRunning
}

// doing is the owning migration's role and phase, for refusals.
func (o *migrationOwner) doing() (role, phase string) {
	st := o.mg.status()
	role, phase = "?", "starting"
	if st != nil {
		role = st.Role
		if st.Progress.Phase != "" {
			phase = st.Progress.Phase.String()
		}
	}
	return role, phase
}
