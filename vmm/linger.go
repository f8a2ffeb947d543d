package vmm

import (
	"context"
	"sync"
)

// A post-copy destination whose post-copy ended here (SETTLED: every
// page arrived and the guest runs here on its own; BROKEN: the VM was
// halted for good) may go on for minutes telling its source how
// (engine: tellSettled, tellBroken, lingerToTell; up to about 6 minutes
// by default, docs/POSTCOPY.md). Its migration still owns the VM
// meanwhile: migrate-incoming is refused, and the VMM's exit (VM.Close)
// would wait for it. engine.Cancel refuses a side that held for post-copy, so
// the VMM ends that wait itself, with a plain cancel of the context
// Receive runs under, which the engine follows only for that wait
// (heldCtx.caller) once post-copy ended:
//
//	engine's Resume at COMMIT ─► ran; one that failed ─► ended (below)
//	Postcopy(nil) after ran, or Halt ─► ended ──┬─ cut asked before ─► end Receive's ctx
//	migrate-cancel (cancelRunning) ─── ended? ──┴─ yes ─► end Receive's ctx, say so
//	shutdown's stop (shutdownLook) ─► cut: end Receive's ctx now if ended, else once it is
//	VM.Close ───────────────────────► cut, the same
//	Halt that failed (migrationVM.Halt) ─► cut, the same
//
// VM.Close cuts it for a VM that ended by itself: Halt stops the VM (so
// Run returns, and ferry-vmm closes its control socket and calls Close),
// as does a guest that powers off. Before, Close waited the telling out
// (TestCloseEndsLingerAfterPostcopy); the source was told by BROKEN or
// SETTLED on its session already, if it was there to hear it: the
// telling only repeats that word to a source that comes back. A Halt
// that failed cuts it too, though the VMM stays (halt_failed.go): the
// migration then ends, and its record is final, within seconds, as for
// a halted VM (TestHaltFailedStaysThenEnds).
//
// The VMM learns the end from the framework.PostcopyTarget calls: after
// the guest ran here, Postcopy(nil) comes once every page arrived
// (engine pcRecv.finish, after Settle) or post-copy broke (pcRecv.broken,
// after Halt), and Halt once it broke (pcRecv.broken, its only caller,
// reached only after the Resume at COMMIT); the engine's other
// Postcopy(nil) (pcRecv.close) comes after either of those or after a
// failure before COMMIT, when the guest never ran here and ran is
// false. From the end on, nothing of the guest depends on the source
// (devices reach guest RAM without the Toucher, or the VM never runs
// again), and the engine only tells the source; Resume came after the
// engine's hold, so the cancel can no longer fail the migration.
// Before that, nothing is cancelled: a cut asked then waits. What it
// costs: a source that did not hear SETTLED or BROKEN on its session
// stays paused and ends, after its reconnect_timeout, handover-unknown
// or postcopy-broken; it never resumes on silence, and migrate -resolve
// reads this side's state. The cut does not end SETTLED's or BROKEN's
// send nor the few seconds' wait for the source's answer on that
// session: the engine runs those under its held context
// (pcRecv.tellSettled, tellBroken), and the cut only ends the listening
// for a source that comes back after it (lingerToTell) and the
// reconnect for a SETTLED that could not be sent.

// A destination whose Resume at COMMIT failed never runs the guest
// (framework.Target.Resume: no vCPU ran) and only tells its source to
// run it on: the engine sends ABORT and, unanswered, listens for the
// source to come back to hear it (engine pcRecv.commit, abortCommit;
// up to about 6 minutes too). That is an end here as well
// (lingerEnd.resumeFailed): a migrate-cancel ends the telling through
// the engine's refused Cancel (heldCtx.telling), the shutdown through
// the same cancel (incomingWait: the guest does not run here), and
// VM.Close through this cut, now or once the Resume failed. Before,
// Close waited the telling out (TestCloseEndsTellingAfterFailedResume).
// What the cut costs: a source that lost the ABORT ends
// handover-unknown after its reconnect_timeout, its copy paused, and
// migrate -resolve resumes it there; the guest never ran here, so it is
// neither lost nor run twice.

// lingerEnd is one migration's view of its destination's post-copy end
// (migrationOwner.linger). Its methods may be called from any goroutine.
type lingerEnd struct {
	mu    sync.Mutex
	ran   bool               // the engine's Resume ran the guest here (COMMIT)
	ended bool               // post-copy ended here: Postcopy(nil) after ran, Halt, or a failed Resume
	cut   bool               // the shutdown asked to end the telling once post-copy ended
	end   context.CancelFunc // cancels the context Receive runs under; nil: none set
}

// setEnd sets the cancel of the context the migration's engine runs
// under (startMigration).
func (l *lingerEnd) setEnd(end context.CancelFunc) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.end = end
}

// resumed records that the engine's Resume ran the guest here.
func (l *lingerEnd) resumed() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ran = true
}

// postcopyUnset records the engine's Postcopy(nil): post-copy ended if
// the guest ran here.
func (l *lingerEnd) postcopyUnset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ran {
		l.endedLocked()
	}
}

// halted records the engine's Halt: post-copy broke for good here.
func (l *lingerEnd) halted() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.endedLocked()
}

// resumeFailed records that the engine's Resume at COMMIT failed on
// this destination: the guest never runs here, and the engine only
// tells the source so (ABORT). Called on a destination only: a
// source's failed Resume is no end of this kind.
func (l *lingerEnd) resumeFailed() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.endedLocked()
}

// endedLocked marks post-copy ended, and ends the telling if a cut was
// asked; l.mu is held.
func (l *lingerEnd) endedLocked() {
	l.ended = true
	if l.cut && l.end != nil {
		l.end()
	}
}

// endNow ends the telling if post-copy ended here (migrate-cancel) and
// says so; otherwise it changes nothing. It cannot say whether the
// engine was still telling: one that had just returned is ended all the
// same.
func (l *lingerEnd) endNow() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.ended || l.end == nil {
		return false
	}
	l.end()
	return true
}

// cutOnEnd ends the telling now if post-copy ended here, else as soon
// as it ends (the shutdown's stop); before that it changes nothing.
func (l *lingerEnd) cutOnEnd() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cut = true
	if l.ended && l.end != nil {
		l.end()
	}
}
