package vmm

import (
	"context"
	"os"
	"slices"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/vmm/api"
)

// The VMM's own shutdown: one for each request (ServeShutdowns, which
// cmd/ferry-vmm feeds with SIGTERM and SIGINT; Run's ctx ending). It
// looks at the VM and its migration under the run lock (runlock.go), so
// it sees a settled state (a migrate-resolve resume passes through
// paused), no migration can begin or pause the VM between its look and
// its stop, and a stop is the last run-state change (an engine's later
// pause or resume fails). What it finds decides:
//
//	request ─► look ─┬─ a sending migration hands the VM over, or runs in post-copy ─► wait for its end ────────┐
//	             ▲   ├─ an incoming migration whose guest does not run here yet ─► cancel it, wait for its end ─┤
//	             │   ├─ handover-unknown ─► wait until migrate-resolve moved the VM ────────────────────────────┤
//	             └───┼──────────────────────────────────────────────────────────────────────────────────────────┘
//	                 ├─ the VM runs, and migrate-resolve resumed the guest here (its only copy) after a
//	                 │  migration ended handover-unknown: one waited for above, or one whose resume
//	                 │  ended after the request came (resolvedHereInShutdown) ─► cancelled: the VM runs on
//	                 └─ otherwise ─► stop; an incoming post-copy's wait to tell its source how
//	                    post-copy ended here is cut, now or once it ended (linger.go)
//
// An incoming migration is looked for before the run lock too: the
// engine's LoadState holds it, and a post-copy one may wait in a fault
// on a page the source owes until the cancel ends it. Each wait is
// bounded by the migration's own limits, except handover-unknown, which
// only migrate-resolve ends (the paused VM may be the only copy of the
// guest: quit is refused there too). After each wait it looks again: a
// later migration (a migrate-send after a resume) is waited for as the
// first was.
//
// A resolve's resume that ends after the request came counts as waited
// for although the shutdown never saw the VM handover-unknown: a
// request a moment earlier would have found it so, waited, and kept the
// guest; one in the middle of the resume (the VM paused, under the run
// lock) looks only once the resolve let go, and finds it running. A
// resume that ended before the request is an earlier one: the request
// stops a running VM as any other.
//
// After a cancelled shutdown the next request is a new shutdown, which
// waits as the first did (ServeShutdowns); a request while a shutdown
// still waits is the caller's to act on (cmd/ferry-vmm exits at once,
// which may lose the guest).

// shutdownWait is what the shutdown waits for before it looks again.
type shutdownWait struct {
	m    *api.Migration // the migration waited through (its record in migration.cur)
	why  string         // logged once for each new reason
	wait func()         // blocks, outside the run lock, until m ended or left handover-unknown
}

// ServeShutdowns takes the VMM's shutdown requests from reqs
// (cmd/ferry-vmm sends one for each SIGINT and SIGTERM) until the VM
// stopped, however it stopped, and then returns nil; a closed reqs asks
// for nothing more (nil at once, or once the shutdown under way ended).
// A request while a shutdown still waits, or looks, is returned: the
// caller insists, and acts on it (cmd/ferry-vmm ends the process at
// once, which may lose the guest). That shutdown goes on waiting;
// ServeShutdowns cannot withdraw it.
//
//	        request                         request
//	armed ──────────► a shutdown (above) ───────────► returned to the caller
//	  ▲                   │         │
//	  └─── cancelled ─────┘         └─ the VM stopped ─► nil
//
// A cancelled shutdown (migrate-resolve resumed the guest here as its
// only copy) re-arms: the next request is a new shutdown, which waits
// as the first did (for a later migration's handover or post-copy), not
// the end of the process.
func (v *VM) ServeShutdowns(reqs <-chan os.Signal) os.Signal {
	for asked := false; ; {
		if !asked && !v.awaitRequest(reqs) {
			return nil
		}
		cancelled, again, insist := v.serveShutdown(reqs)
		if !cancelled {
			return insist // nil once the VM stopped
		}
		asked = again
	}
}

// awaitRequest waits for a shutdown request; false once the VM stopped
// or reqs was closed.
func (v *VM) awaitRequest(reqs <-chan os.Signal) bool {
	select {
	case _, ok := <-reqs:
		return ok
	case <-v.stopped:
		return false
	}
}

// serveShutdown runs one shutdown for ServeShutdowns. It returns
// cancelled (logged), and asked if a request came as it was cancelled
// (a new shutdown); or the request that came while it waited (insist);
// or nothing once the VM stopped.
func (v *VM) serveShutdown(reqs <-chan os.Signal) (cancelled, asked bool, insist os.Signal) {
	s := v.beginShutdown(nil)
	kept := make(chan bool, 1)
	go func() { kept <- s.run() }() // left waiting if the caller insists: it ends the process
	ended := func(k bool) bool {
		if k {
			v.log.Warn("shutdown cancelled: migrate -resolve resumed the guest here, and this is its only copy; " +
				"quit stops it, and so does the next signal unless a migration then defers it")
		}
		return k
	}
	for {
		select {
		case k := <-kept:
			return ended(k), false, nil
		case <-v.stopped:
			return false, false, nil
		case sig, ok := <-reqs:
			if !ok {
				reqs = nil // nothing more to ask: wait for this one's end
				continue
			}
			select {
			case k := <-kept: // it had ended as sig came: sig asks anew
				return ended(k), k, nil
			default:
				return false, false, sig
			}
		}
	}
}

// shutdown is one shutdown request, whole: it returns once it stopped
// the VM (false) or was cancelled (true).
func (v *VM) shutdown() (cancelled bool) { return v.beginShutdown(nil).run() }

// shutdownAfter is shutdown once it has waited through the migrations in
// waited (their records): the look a shutdown's goroutine makes after a
// wait, however late it runs.
func (v *VM) shutdownAfter(waited []*api.Migration) (cancelled bool) {
	return v.beginShutdown(waited).run()
}

// shutdownRun is one shutdown from its request (beginShutdown) to its
// end (run).
type shutdownRun struct {
	v      *VM
	waited []*api.Migration // the migrations it waited through (their records)
	// resolved holds the migrations migrate-resolve resolved by resuming
	// the guest here since the request (resolvedHereInShutdown); v.mu.
	resolved []*api.Migration
}

// beginShutdown registers a shutdown at its request: from now until its
// run ended, a migrate-resolve resume here counts as a migration it
// waited through. Each one must be run.
func (v *VM) beginShutdown(waited []*api.Migration) *shutdownRun {
	s := &shutdownRun{v: v, waited: waited}
	v.mu.Lock()
	v.shutdowns = append(v.shutdowns, s)
	v.mu.Unlock()
	return s
}

// run is the shutdown's loop: not while a sending migration hands the VM
// over or runs in post-copy, not before an incoming one whose guest does
// not run here yet was cancelled, not while its handover is unknown, and
// not at all once migrate-resolve resumed the guest here as its only
// copy after such a wait or after the request. It reports whether it
// was cancelled (the VM left running).
func (s *shutdownRun) run() (cancelled bool) {
	v := s.v
	defer s.end()
	said := ""
	for {
		// An incoming migration is cancelled without the run lock first:
		// the engine's LoadState holds it, and a post-copy one may wait
		// in a fault on a page the source owes until the cancel ends it.
		w, kept := v.incomingWait(v.migration()), false
		if w == nil {
			_ = v.runLocked(context.Background(), func(context.Context, *migrationOwner) error { // every holder is bounded
				w, kept = v.shutdownLook(slices.Concat(s.waited, s.resolvedSince()))
				return nil
			})
		}
		switch {
		case w != nil:
			if w.why != said {
				v.log.Warn(w.why)
				said = w.why
			}
			w.wait()
			s.waited = append(s.waited, w.m)
		default:
			return kept
		}
	}
}

// end unregisters the shutdown (beginShutdown).
func (s *shutdownRun) end() {
	s.v.mu.Lock()
	defer s.v.mu.Unlock()
	s.v.shutdowns = slices.DeleteFunc(s.v.shutdowns, func(r *shutdownRun) bool { return r == s })
}

// resolvedSince is the migrations resolved here since the request.
func (s *shutdownRun) resolvedSince() []*api.Migration {
	s.v.mu.Lock()
	defer s.v.mu.Unlock()
	return slices.Clone(s.resolved)
}

// resolvedHereInShutdown tells every shutdown under way of m, a
// migration whose handover migrate-resolve just resolved by resuming
// the guest here (its caller holds the run lock): each then treats m as
// one it waited through, as it would had it looked before the resume.
func (v *VM) resolvedHereInShutdown(m *api.Migration) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, s := range v.shutdowns {
		s.resolved = append(s.resolved, m)
	}
}

// shutdownLook is one look of the shutdown; the caller holds the run
// lock, and waited holds the migrations the shutdown waited through and
// those resolved here since its request. It returns what to wait for, or
// kept (the VM is left running), or stops the VM and returns neither.
func (v *VM) shutdownLook(waited []*api.Migration) (w *shutdownWait, kept bool) {
	mg := v.migration()
	if w := v.handoverWait(mg); w != nil {
		return w, false
	}
	if w := v.incomingWait(mg); w != nil {
		return w, false
	}
	switch st := v.Status().State; {
	case st == StateHandoverUnknown:
		return &shutdownWait{m: mg.record(), wait: func() { v.awaitLeaving(StateHandoverUnknown) },
			why: "shutdown deferred: the handover of this VM is unknown and this paused copy may be the only one of the guest; " +
				"this VMM stops once migrate -resolve settled it (a second signal exits now and may lose the guest)"}, false
	case st == StateRunning && mg.resolvedHere(waited):
		return nil, true
	}
	if own := mg.owner(); own != nil { // nil mg: none
		own.linger.cutOnEnd() // an incoming post-copy's telling its source how it ended (linger.go)
	}
	v.Stop()
	return nil, false
}

// handoverWait is the wait while this VMM sends a migration in
// post-copy (the guest runs on the destination and needs pages only this
// process holds: exiting now would lose it) or in its handover
// (stopping the paused VM now could leave no copy to resume if the
// destination never ran it), or nil. It decides from the migration's last
// progress report (migration.handingOver), which the engine sends for
// the switch before it pauses the VM (engine
// TestSwitchReportedBeforePause), and which, until the VMM records the
// end, still says handover-unknown: a VM the engine paused is always
// waited for. A VM stopped just before the switch (this look holds the
// run lock the engine's pause needs) fails the engine's pause or state
// save and then its resume, and the migration ends failed with the
// source side failed (sideAfter), not running.
func (v *VM) handoverWait(mg *migration) *shutdownWait {
	if mg == nil {
		return nil
	}
	done, postcopy := mg.handingOver()
	if done == nil {
		return nil
	}
	why := "shutdown deferred: the VM is being handed over to the destination; " +
		"this VMM exits once the handover ended (a second signal exits now and may lose the guest)"
	if postcopy {
		why = "shutdown deferred: the guest runs on the destination in post-copy and needs pages only this VMM holds; " +
			"this VMM exits once the migration ended (a second signal exits now and loses the guest)"
	}
	return &shutdownWait{m: mg.record(), why: why, wait: func() { <-done }}
}

// incomingWait is the wait while this VMM receives a migration whose
// guest does not run here yet, or nil: it cancels the migration and waits
// until it ended, which the engine makes quick in every state (the
// source is told, ABORT, and its guest runs on there; a COMMIT that was
// already on its way is refused), so that the shutdown's stop never
// meets a migration still going. Before, the stop alone left the engine
// running behind it: the VMM did not exit until the source had sent
// every page (or incoming_timeout passed) and COMMIT found the VM
// stopped.
//
// The engine's Resume at COMMIT is refused from this look on (resumeFor,
// under v.mu): a COMMIT the engine acted on just before the cancel (it
// held, and refuses the cancel) would run the guest here; the source
// then paused its copy for good, and this shutdown stopped the only
// running one. Refused, the engine fails and tells the source (ABORT),
// which resumes. A guest that already runs here (the Resume came first;
// the migration's progress may not say so yet) is stopped as any
// running VM is. The cancel is called in the wait, outside the run lock:
// the engine may hold its own hold while it waits for the run lock.
func (v *VM) incomingWait(mg *migration) *shutdownWait {
	if mg == nil {
		return nil
	}
	cancel, done := mg.incoming()
	if cancel == nil {
		return nil
	}
	v.mu.Lock()
	runs := v.state == StateRunning // an incoming VM runs only from its COMMIT's Resume on
	v.incomingCancelled = !runs
	v.mu.Unlock()
	if runs {
		return nil
	}
	return &shutdownWait{m: mg.record(), why: "shutdown: cancelling the incoming migration; the guest stays on the source",
		wait: func() {
			cancel()
			<-done // the engine returned: it resumes nothing any more
			v.mu.Lock()
			v.incomingCancelled = false // a guest that migrate -resolve resumes here may be sent on later
			v.mu.Unlock()
		}}
}

// record is the current migration's record (migration.cur, which
// begin replaces and resolve updates in place), or nil; nil for a nil mg.
func (mg *migration) record() *api.Migration {
	if mg == nil {
		return nil
	}
	mg.mu.Lock()
	defer mg.mu.Unlock()
	return mg.cur
}

// resolvedHere reports whether one of the migrations in ms ended with its
// handover unknown and migrate-resolve resumed the guest here since (its
// side is running). It cannot say whether the guest still runs: the
// caller looks at the VM.
func (mg *migration) resolvedHere(ms []*api.Migration) bool {
	if mg == nil {
		return false
	}
	mg.mu.Lock()
	defer mg.mu.Unlock()
	for _, m := range ms {
		if m != nil && m.Done && m.Report != nil && m.Report.Status == engine.StatusHandoverUnknown && m.Side == api.SideRunning {
			return true
		}
	}
	return false
}
