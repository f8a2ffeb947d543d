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
// A nil after the guest ran here says post-copy ended (linger.go).
func (m migrationVM) Postcopy(t framework.Toucher) {
	m.v.ram.setToucher(t)
	if t == nil && m.own != nil {
		m.own.linger.postcopyUnset()
	}
}

// Halt implements framework.PostcopyTarget (vmm/postcopy.go); post-copy
// ended here, broken (linger.go). When it fails, the VMM stays, its
// guest frozen (halt_failed.go), and the engine's telling of the source
// is cut now, as VM.Close cuts a halted VM's: the migration then ends
// within seconds (BROKEN on the session and its answer), its record
// final, and quit works.
func (m migrationVM) Halt() error {
	err := m.v.halt()
	if m.own != nil {
		if err != nil {
			m.own.linger.cutOnEnd()
		}
		m.own.linger.halted() // once the VM is halted, or could not be
	}
	return err
}

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
// migration (VM.incomingWait). One that ran a paused VM again is
// recorded in the owner (resumed): the VM's state alone cannot say so
// once a stop (a power-off, a failure), which does not take the run
// lock, ended it; one that failed is recorded too (resumeFailed), and
// on a destination it ends the wait to tell the source (ABORT) once
// the VMM's exit asks (linger.go: lingerEnd.resumeFailed).
func (m migrationVM) Resume() (err error) {
	defer func() {
		if err != nil {
			m.own.resumeFailed.Store(true)
			if role, _ := m.own.doing(); role == transport.RoleReceive.String() {
				m.own.linger.resumeFailed()
			}
		}
	}()
	return m.own.do(context.Background(), func(context.Context) error {
		was := m.v.Status().State // under the run lock: only a stop can change it meanwhile
		if err := m.v.resumeFor(true); err != nil {
			return err
		}
		if was == StatePaused {
			m.own.resumed = true
		}
		m.own.linger.resumed()
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
	// ended is the VM's run history when the current migration ended
	// (finishLocked): quit, given that migration's id, refuses a VM that
	// ran since (checkQuit).
	ended runMark
}

// owner is the current (or last) migration's hold on the VM's run state,
// or nil (also for a nil mg). Its do fails with errNotOwner once
// released: a command that decides how a migration ends
// (migrate-resolve) runs its change through owner().do and then
// owner().release.
func (mg *migration) owner() *migrationOwner {
	if mg == nil {
		return nil
	}
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

// finishLocked records the end of the current migration, and where the
// VM's run history stood then (mg.ended). The caller holds mg.mu, and
// the run lock (every end is recorded under it: endMigration,
// finishUnopened through release), so the VM's state is final.
func (mg *migration) finishLocked(rep engine.Report, side api.Side) {
	mg.cur.Done, mg.cur.Report, mg.cur.Side = true, &rep, side
	if mg.own != nil {
		mg.ended = mg.own.v.runMark()
	}
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
// the plugins' start was recorded failed. It returns the status it
// recorded.
func (mg *migration) finishUnopened(ctx context.Context, err error, side api.Side) engine.Status {
	mg.mu.Lock()
	defer mg.mu.Unlock()
	st := engine.StatusFailed
	if ctx.Err() != nil {
		st = engine.StatusCancelled
	}
	mg.finishLocked(engine.Report{Status: st, Error: err.Error()}, side)
	return st
}

// status returns a copy of the current migration, or nil, with the
// VMM's api.ControlVersion and the migration's tag fingerprint.
func (mg *migration) status() *api.Migration {
	mg.mu.Lock()
	defer mg.mu.Unlock()
	if mg.cur == nil {
		return nil
	}
	c := *mg.cur
	c.Control, c.TagFingerprint = api.ControlVersion, tagFingerprint(mg.cur)
	return &c
}

// tagFingerprint is m's tag fingerprint (api.Migration.TagFingerprint):
// its report's once it ended, else its last progress's.
func tagFingerprint(m *api.Migration) string {
	if m.Report != nil {
		return m.Report.TagFingerprint
	}
	return m.Progress.TagFingerprint
}

// cancelRunning stops a running migration (the source resumes) and
// says so, or says why it did not: none runs, the guest runs or is about
// to run on the destination in post-copy, where stopping either side
// would lose it, a pre-copy source writes COMMIT or waits for RUNNING,
// or a pre-copy destination acts on COMMIT. A post-copy destination
// whose Resume at COMMIT failed (the engine held, but the guest never
// ran here) says so (errResumeFailedNoCancel): the engine fails the
// migration and tells the source. Before, that was answered as
// post-copy, whose guest runs on the destination
// (TestCancelAfterFailedPostcopyResume). On a post-copy destination
// whose post-copy already ended here (every page arrived, or broke for
// good) it ends the engine's wait to tell the source how, the only
// thing left (lingerEnd.endNow), and says so (errLingerEnded): the
// migration is not cancelled, it ends at once as it would have. The engine decides (its
// Cancel, under its hold: engine/cancel.go), not the last progress
// report, which follows the hold a moment later: a cancel answered
// "cancelled" is one the engine applied. Before, a cancel between the
// hold and that report was answered "cancelled" and ignored. Given an
// id (n.ID; "": any), it cancels only that migration, and fails, cancelling
// nothing, while mg holds another (checkIDLocked); the same given a tag
// fingerprint (n.TagFingerprint: another, or none yet, is another).
func (mg *migration) cancelRunning(n api.IDArgs) (api.CancelResult, error) {
	mg.mu.Lock()
	defer mg.mu.Unlock()
	if err := mg.checkIDLocked("migrate-cancel", n); err != nil {
		return api.CancelResult{}, err
	}
	if mg.cur == nil || mg.cur.Done {
		return api.CancelResult{Why: "no migration is running"}, nil
	}
	took, postcopy := mg.cancel()
	receiving := mg.cur.Role == transport.RoleReceive.String()
	switch {
	case took:
		return api.CancelResult{Cancelled: true}, nil
	case postcopy && receiving && mg.own != nil && mg.own.resumeFailed.Load():
		return api.CancelResult{Committing: true, Why: errResumeFailedNoCancel}, nil
	case postcopy && receiving && mg.own != nil && mg.own.linger.endNow():
		return api.CancelResult{Postcopy: true, Why: errLingerEnded}, nil
	case postcopy:
		return api.CancelResult{Postcopy: true, Why: errPostcopyNoCancel}, nil
	case mg.cur.Role == transport.RoleSend.String():
		return api.CancelResult{Committing: true, Why: errCommittingNoCancel}, nil
	}
	return api.CancelResult{Committing: true, Why: errCommittedHereNoCancel}, nil
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

// migration is the VM's migration record (v.mig), or nil before the
// first Serve.
func (v *VM) migration() *migration {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.mig
}

// migrations returns the VM's one migration record, made by the first
// call (the first Serve): every control server of the VM shares it.
// Before, each Serve made its own and the last one replaced the VM's,
// so a migration started through one socket was invisible to another's
// migrate-status, migrate-cancel and migrate-resolve, and to quit and
// the shutdown, which read the VM's (TestServeTwiceOneMigration).
func (v *VM) migrations() *migration {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.mig == nil {
		v.mig = &migration{}
	}
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

// errCommittingNoCancel is migrate-cancel's answer on a pre-copy source
// that writes COMMIT or waits for RUNNING.
const errCommittingNoCancel = "COMMIT is going or has gone out: the destination may run the guest, and a cancel now could only " +
	"leave the handover unknown; the migration ends within switchover_timeout (completed on RUNNING, failed with this VM " +
	"running again on the destination's ABORT, or handover-unknown without an answer)"

// errCommittedHereNoCancel is migrate-cancel's answer on a pre-copy
// destination that acts on COMMIT.
const errCommittedHereNoCancel = "COMMIT arrived: the guest runs here, or is being resumed here, and the source keeps its copy paused; " +
	"the migration ends once RUNNING went out (completed), or failed with the guest running on the source again if it would not resume here"

// errLingerEnded is migrate-cancel's answer on a post-copy destination
// whose post-copy had ended here and that only waited to tell its
// source how (linger.go).
const errLingerEnded = "post-copy had already ended here (every page arrived and the guest runs here, or it broke and the VM was halted); " +
	"this VMM only waited to tell the source how (up to about 6 minutes): that wait is ended, nothing else is cancelled, and the migration " +
	"ends now as it would have (completed, or post-copy-broken), within seconds if SETTLED or BROKEN is still going out; a source that " +
	"did not hear it ends handover-unknown or post-copy-broken after its reconnect_timeout, and migrate -resolve reads this side"

// errPostcopyNoCancel is migrate-cancel's answer in post-copy.
const errPostcopyNoCancel = "post-copy cannot be cancelled: the guest runs on the destination and needs pages only the source holds; " +
	"the migration ends when they all arrived, or as post-copy-broken when the connection stayed down for reconnect_timeout"

// errResumeFailedNoCancel is migrate-cancel's answer on a post-copy
// destination whose engine's Resume at COMMIT failed (resumeFailed).
// The refused engine.Cancel is not without effect: it ends the engine's
// wait for a source that lost the ABORT (heldCtx.telling), and the
// answer says so.
const errResumeFailedNoCancel = "COMMIT arrived, but the guest could not be resumed here and never ran here: nothing of the guest is " +
	"left to cancel; the destination told the source to run the guest on (ABORT), and this cancel ends its wait for a source " +
	"that lost that ABORT to come back and hear it again, so the migration ends failed within seconds (such a source ends " +
	"handover-unknown after its reconnect_timeout; migrate -resolve resumes it there)"
