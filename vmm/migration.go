package vmm

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/bitmap"
	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/vmm/api"
)

// The VM as the migration engine sees it: framework.Source on the sending
// side, framework.Target on the receiving side. Page index i of the
// framework is memfd page i: the regions are laid out back to back in one
// memfd, in order.

// migrationVM adapts a VM to framework.Source and framework.Target. Its
// run-state changes go through the migration's hold on the run lock
// (runlock.go), so they are the only ones while it runs; own is nil only
// for RAM, which changes nothing.
type migrationVM struct {
	v   *VM
	own *migrationOwner
}

var (
	_ framework.Source         = migrationVM{}
	_ framework.Target         = migrationVM{}
	_ framework.PostcopyTarget = migrationVM{}
)

// RAM implements framework.Source and framework.Target.
func (m migrationVM) RAM() framework.Layout {
	var l framework.Layout
	for _, r := range m.v.mem.Regions() {
		l = append(l, framework.Region{GPA: r.GPA, Size: r.Size, Fd: m.v.mem.Fd(), Offset: r.Offset})
	}
	return l
}

// Memory implements framework.Source.
func (m migrationVM) Memory(i int) []byte {
	r := m.v.mem.Regions()[i]
	return m.v.mem.Host()[r.Offset : r.Offset+r.Size]
}

// GuestMemory implements framework.PostcopyTarget: region i of the one
// MAP_SHARED mapping that KVM's memory slots (setSlots) and the device
// code (guestRAM) use. It stays mapped until the VM is closed.
func (m migrationVM) GuestMemory(i int) []byte { return m.Memory(i) }

// Postcopy implements framework.PostcopyTarget: from now on (until t is
// nil) the devices' accesses to guest RAM call t.Touch first (guestram.go).
func (m migrationVM) Postcopy(t framework.Toucher) { m.v.ram.setToucher(t) }

// Halt implements framework.PostcopyTarget (vmm/postcopy.go).
func (m migrationVM) Halt() error { return m.v.halt() }

// StartDirtyLog implements framework.Source.
func (m migrationVM) StartDirtyLog() error { return m.v.EnableDirtyLog() }

// SyncDirtyLog implements framework.Source.
func (m migrationVM) SyncDirtyLog(dst *bitmap.Bitmap) error { return m.v.SyncDirtyLog(dst.Words()) }

// StopDirtyLog implements framework.Source.
func (m migrationVM) StopDirtyLog() error { return m.v.DisableDirtyLog() }

// Pause implements framework.Source.
func (m migrationVM) Pause(ctx context.Context) error { return m.own.do(ctx, m.v.pause) }

// Resume implements framework.Source and framework.Target. A
// destination's is refused once the VMM's shutdown cancelled the
// migration (VM.cancelIncoming). One that ran a paused VM again is
// recorded in the owner (resumed): the VM's state alone cannot say so
// once a stop, which does not take the run lock, ended it.
func (m migrationVM) Resume() error {
	return m.own.do(context.Background(), func(context.Context) error {
		was := m.v.Status().State // under the run lock: only a stop can change it meanwhile
		if err := m.v.resumeFor(true); err != nil {
			return err
		}
		if was == StatePaused {
			m.own.resumed = true
		}
		return nil
	})
}

// SaveState implements framework.Source.
func (m migrationVM) SaveState(ctx context.Context) ([]byte, error) {
	var blob []byte
	err := m.own.do(ctx, func(ctx context.Context) error {
		var err error
		blob, err = m.v.saveState(ctx)
		return err
	})
	return blob, err
}

// LoadState implements framework.Target.
func (m migrationVM) LoadState(ctx context.Context, b []byte) error {
	return m.own.do(ctx, func(ctx context.Context) error { return m.v.loadState(ctx, b) })
}

// canceller cancels a migration unless it already held, and says so:
// engine.Cancel.Cancel (cancelWith), or a test's stand-in.
type canceller func() (took, postcopy bool)

// cancelWith is the canceller of a migration that runs under c
// (engine.NewCancel): c decides, under the engine's hold, whether a
// cancel takes.
func cancelWith(c *engine.Cancel) canceller {
	return func() (bool, bool) { return c.Cancel(errCancelledHere) }
}

// errCancelledHere is the cause of a cancel by this VMM.
var errCancelledHere = errors.New("cancelled by this VMM (migrate-cancel, or its shutdown)")

// migration tracks one migration at a time.
type migration struct {
	mu     sync.Mutex
	cur    *api.Migration
	cancel canceller
	done   chan struct{}
	own    *migrationOwner // the current migration's hold on the VM (set by claim)
	// toPostcopy is the running migrate-send's manual switch
	// (engine.Options.StartPostcopy), closed once by migrate-start-postcopy
	// (askedPostcopy); nil before a migrate-send (postcopy.go).
	toPostcopy    chan struct{}
	askedPostcopy bool
}

// owner is the current (or last) migration's hold on the VM's run state,
// or nil. Its do fails with errNotOwner once released: a command that
// decides how a migration ends (migrate-resolve) runs its change through
// owner().do and then owner().release.
func (mg *migration) owner() *migrationOwner {
	mg.mu.Lock()
	defer mg.mu.Unlock()
	return mg.own
}

// begin registers a new migration (id: its api.MigrateArgs.ID); it
// fails while one is running.
func (mg *migration) begin(role, id string, cancel canceller) error {
	mg.mu.Lock()
	defer mg.mu.Unlock()
	if mg.cur != nil && !mg.cur.Done {
		return fmt.Errorf("a migration (%s) is already running", mg.cur.Role)
	}
	mg.cur, mg.cancel, mg.done = &api.Migration{Role: role, Side: api.SideMigrating, ID: id}, cancel, make(chan struct{})
	mg.toPostcopy, mg.askedPostcopy = nil, false // a new migrate-send makes its own (switchable)
	return nil
}

func (mg *migration) progress(p engine.Progress) {
	mg.mu.Lock()
	mg.cur.Progress = p
	mg.mu.Unlock()
}

func (mg *migration) finish(rep engine.Report, side api.Side) {
	mg.mu.Lock()
	defer mg.mu.Unlock()
	mg.finishLocked(rep, side)
}

func (mg *migration) finishLocked(rep engine.Report, side api.Side) {
	mg.cur.Done, mg.cur.Report, mg.cur.Side = true, &rep, side
	close(mg.done)
}

// finishUnopened records a migration whose session did not open (err:
// a plugin did not start, or its block was refused) and whose engine
// never ran: failed, or cancelled when its context ctx was, which only
// its canceller does (migrate-cancel, the VMM's shutdown) until the
// migration ends. It decides under mg.mu, which cancelRunning holds as
// it cancels: a cancel answered "cancelled" is recorded so, including
// one that came after the start failed for another reason; one that
// comes after this finds no migration running. Before, a cancel during
// the plugins' start was recorded failed.
func (mg *migration) finishUnopened(ctx context.Context, err error, side api.Side) {
	mg.mu.Lock()
	defer mg.mu.Unlock()
	st := engine.StatusFailed
	if ctx.Err() != nil {
		st = engine.StatusCancelled
	}
	mg.finishLocked(engine.Report{Status: st, Error: err.Error()}, side)
}

// status returns a copy of the current migration, or nil.
func (mg *migration) status() *api.Migration {
	mg.mu.Lock()
	defer mg.mu.Unlock()
	if mg.cur == nil {
		return nil
	}
	c := *mg.cur
	return &c
}

// cancelRunning stops a running migration (the source resumes) and
// says so, or says why it did not: none runs, the guest runs or is about
// to run on the destination in post-copy, where stopping either side
// would lose it, a pre-copy source writes COMMIT or waits for RUNNING,
// or a pre-copy destination acts on COMMIT. The engine decides (its
// Cancel, under its hold: engine/cancel.go), not the last progress
// report, which follows the hold a moment later: a cancel answered
// "cancelled" is one the engine applied. Before, a cancel between the
// hold and that report was answered "cancelled" and ignored.
func (mg *migration) cancelRunning() api.CancelResult {
	mg.mu.Lock()
	defer mg.mu.Unlock()
	if mg.cur == nil || mg.cur.Done {
		return api.CancelResult{Why: "no migration is running"}
	}
	took, postcopy := mg.cancel()
	switch {
	case took:
		return api.CancelResult{Cancelled: true}
	case postcopy:
		return api.CancelResult{Postcopy: true, Why: errPostcopyNoCancel}
	case mg.cur.Role == transport.RoleSend.String():
		return api.CancelResult{Committing: true, Why: errCommittingNoCancel}
	}
	return api.CancelResult{Committing: true, Why: errCommittedHereNoCancel}
}

// handingOver returns, while this VMM sends a migration that switched
// to post-copy (engine Progress.Mode) or is in its handover (the VM
// paused for the switch, COMMIT perhaps sent, or the engine's last
// report says the handover is unknown and the VMM has not recorded it
// yet: endMigration), the channel closed when that migration ends, and
// whether it is post-copy; nil otherwise.
func (mg *migration) handingOver() (<-chan struct{}, bool) {
	mg.mu.Lock()
	defer mg.mu.Unlock()
	if mg.cur == nil || mg.cur.Done || mg.cur.Role != transport.RoleSend.String() {
		return nil, false
	}
	p := mg.cur.Progress
	switch {
	case p.Mode == engine.ModePostcopy:
	case p.Handover == engine.HandoverSwitchover, p.Handover == engine.HandoverCommitting, p.Handover == engine.HandoverUnknown:
	default:
		return nil, false
	}
	return mg.done, p.Mode == engine.ModePostcopy
}

// migration is the control socket's migrations (v.mig), or nil without
// one.
func (v *VM) migration() *migration {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.mig
}

// incoming returns, while this VMM receives a migration whose guest does
// not run here yet, its cancel and the channel closed when it ends; nil
// otherwise.
func (mg *migration) incoming() (canceller, <-chan struct{}) {
	mg.mu.Lock()
	defer mg.mu.Unlock()
	if mg.cur == nil || mg.cur.Done || mg.cur.Role != transport.RoleReceive.String() {
		return nil, nil
	}
	if h := mg.cur.Progress.Handover; h == engine.HandoverRunning || h == engine.HandoverPostcopy {
		return nil, nil
	}
	return mg.cancel, mg.done
}

// cancelIncoming is the VMM's own shutdown (SIGTERM, SIGINT) while it
// receives a migration whose guest does not run here yet: it cancels
// the migration and waits until it ended, which the engine makes quick
// in every state (the source is told, ABORT, and its guest runs on
// there; a COMMIT that was already on its way is refused), so that the
// shutdown's stop never meets a migration still going. Before, the stop
// alone left the engine running behind it: the VMM did not exit until
// the source had sent every page (or incoming_timeout passed) and
// COMMIT found the VM stopped.
//
// The engine's Resume at COMMIT is refused from here on (resumeFor,
// under v.mu): a COMMIT the engine acted on just before the cancel (it
// held, and refuses the cancel) would run the guest here; the source
// then paused its copy for good, and this shutdown stopped the only
// running one. Refused, the engine fails and tells the source (ABORT),
// which resumes. A guest that
// already runs here (the Resume came first; the migration's progress
// may not say so yet) is stopped as any running VM is.
//
// It reports whether it waited for the migration's end, which then
// decides what the shutdown may stop (awaitResolved).
func (v *VM) cancelIncoming() (waited bool) {
	mg := v.migration()
	if mg == nil {
		return false
	}
	cancel, done := mg.incoming()
	if cancel == nil {
		return false
	}
	v.mu.Lock()
	runs := v.state == StateRunning // an incoming VM runs only from its COMMIT's Resume on
	v.incomingCancelled = !runs
	v.mu.Unlock()
	if runs {
		return false
	}
	v.log.Warn("shutdown: cancelling the incoming migration; the guest stays on the source")
	cancel()
	<-done // the engine returned: it resumes nothing any more
	v.mu.Lock()
	v.incomingCancelled = false // a guest that migrate -resolve resumes here may be sent on later
	v.mu.Unlock()
	return true
}

// awaitHandover holds the VMM's own shutdown (SIGTERM, SIGINT) while it
// sends a migration in post-copy (the guest runs on the destination and
// needs pages only this process holds: exiting now would lose it) or
// in its handover (stopping the paused VM now could leave no copy to
// resume if the destination never ran it). The shutdown goes on once the
// migration ended (then awaitResolved, if its handover is unknown). A
// second signal kills the process at once (cmd/ferry-vmm), which may
// lose the guest.
//
// It decides from the migration's last progress report, which the
// engine sends for the switch before it pauses the VM (engine
// TestSwitchReportedBeforePause), and whose last report, before the
// VMM records the end, still says handover-unknown: a VM the engine
// paused is always waited for. A signal just before the switch stops the VM as in any
// live pass; the engine's pause or state save then fails, its resume
// too, and the migration ends failed with the source side failed
// (sideAfter), not running. Nothing here holds the engine off between
// the look and the stop: a switch that slips in between fails the same
// way, or completes if the state was already saved (Close waits for the
// engine, so guest RAM outlives it).
//
// It reports whether it waited: the migration's end then decides what
// the shutdown may stop (awaitResolved).
func (v *VM) awaitHandover() (waited bool) {
	mg := v.migration()
	if mg == nil {
		return false
	}
	done, postcopy := mg.handingOver()
	if done == nil {
		return false
	}
	if postcopy {
		v.log.Warn("shutdown deferred: the guest runs on the destination in post-copy and needs pages only this VMM holds; " +
			"this VMM exits once the migration ended (a second signal exits now and loses the guest)")
	} else {
		v.log.Warn("shutdown deferred: the VM is being handed over to the destination; " +
			"this VMM exits once the handover ended (a second signal exits now and may lose the guest)")
	}
	<-done
	return true
}

// awaitResolved holds the VMM's own shutdown while the handover of a
// migration is unknown (StateHandoverUnknown): the paused VM may be the
// only copy of the guest (a post-copy destination that never got COMMIT
// lacks its absent pages), and quit is refused there for that reason.
// It returns once migrate-resolve moved the VM (or it was stopped
// otherwise), reporting whether the guest now runs here: resumed as its
// only copy (the other side was discarded), which the shutdown must then
// not stop. A second signal kills the process at once (cmd/ferry-vmm),
// which may lose the guest.
//
// deferred says the shutdown waited for the migration's end
// (awaitHandover, cancelIncoming): if it ended handover-unknown, a
// migrate-resolve that resumed the guest here before this look (the
// shutdown's goroutine may run late) resumed it as its only copy too;
// found running, it is not stopped. A later shutdown stops a VM running
// here as any other.
func (v *VM) awaitResolved(deferred bool) (runsHere bool) {
	switch st := v.Status().State; {
	case st == StateHandoverUnknown:
	case deferred && v.endedUnknown():
		return v.runsNow()
	default:
		return false
	}
	v.log.Warn("shutdown deferred: the handover of this VM is unknown and this paused copy may be the only one of the guest; " +
		"this VMM stops once migrate -resolve settled it (a second signal exits now and may lose the guest)")
	for {
		v.awaitLeaving(StateHandoverUnknown)
		if st := v.settledState(); st != StateHandoverUnknown {
			return st == StateRunning
		}
	}
}

// settledState is the VM's state once no run-state change is under way:
// a resolve that moves it holds the run lock until it is done (a resume
// passes through paused, and a failed one comes back).
func (v *VM) settledState() State {
	var st State
	_ = v.runLocked(context.Background(), func(context.Context, *migrationOwner) error {
		st = v.Status().State
		return nil
	})
	return st
}

// runsNow reports whether the VM runs, read as settledState.
func (v *VM) runsNow() bool { return v.settledState() == StateRunning }

// endedUnknown reports whether this VMM's last migration ended with its
// handover unknown (whatever migrate-resolve made of it since).
func (v *VM) endedUnknown() bool {
	mg := v.migration()
	if mg == nil {
		return false
	}
	st := mg.status()
	return st != nil && st.Done && st.Report != nil && st.Report.Status == engine.StatusHandoverUnknown
}

// errCommittingNoCancel is migrate-cancel's answer on a pre-copy source
// that writes COMMIT or waits for RUNNING.
const errCommittingNoCancel = "COMMIT is going or has gone out: the destination may run the guest, and a cancel now could only " +
	"leave the handover unknown; the migration ends within switchover_timeout (completed on RUNNING, failed with this VM " +
	"running again on the destination's ABORT, or handover-unknown without an answer)"

// errCommittedHereNoCancel is migrate-cancel's answer on a pre-copy
// destination that acts on COMMIT.
const errCommittedHereNoCancel = "COMMIT arrived: the guest runs here, or is being resumed here, and the source keeps its copy paused; " +
	"the migration ends once RUNNING went out (completed), or failed with the guest running on the source again if it would not resume here"

// errPostcopyNoCancel is migrate-cancel's answer in post-copy.
const errPostcopyNoCancel = "post-copy cannot be cancelled: the guest runs on the destination and needs pages only the source holds; " +
	"the migration ends when they all arrived, or as post-copy-broken when the connection stayed down for reconnect_timeout"
