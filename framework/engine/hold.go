package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// A migration in post-copy cannot be cancelled: once the destination
// runs the guest, the pages only the source holds are part of it, so
// stopping either side would lose the guest (QEMU refuses migrate_cancel
// in post-copy for the same reason). Send and Receive therefore run
// under a heldCtx: it ends with the caller's context until the side
// commits to post-copy (hold), and never after; a cancel after that is
// logged and ignored (but by a destination whose post-copy ended: it
// ends the wait to tell the source how, heldCtx.caller, and is logged
// as doing so, receiver.cancelAfterHold). What still ends a post-copy:
// every page arrived, or the connection stayed broken for
// ReconnectTimeout, or the process dies. A pre-copy source holds too,
// as it decides to write COMMIT: a cancel could then only cut the
// COMMIT write or the wait for RUNNING short and leave the handover
// unknown, while the destination answers within SwitchoverTimeout
// (RUNNING: completed; ABORT: resumed here).
// A pre-copy destination holds as it acts on COMMIT, before it resumes
// the VM: a cancel from then on is ignored, as one after its look at the
// context always was (the guest runs here; RUNNING must go out).
//
// A cancel of the context says nothing back. A caller that must know
// whether its cancel took (a VMM answering its operator) cancels through
// a Cancel (cancel.go), which decides under mu, with hold: took, and no
// hold follows; or refused (held), and nothing is cancelled.

// heldCtx is a context that follows its parent's cancellation until
// hold, and has no deadline of its own (the parent's deadline ends it
// like a cancel, before hold). Values are the parent's.
//
// Err and hold look at the parent themselves: the function that ends c
// runs on a goroutine of its own a moment after the parent ended, and a
// COMMIT read in that moment was taken although the caller's cancel had
// returned (a VMM that then stopped the VM, sure the migration was
// cancelled, stopped the guest that had just started to run there).
type heldCtx struct {
	context.Context // the parent without its cancellation: values
	parent          context.Context
	done            chan struct{}
	mu              sync.Mutex
	err             error
	held            bool
	postcopy        bool // held for post-copy's commit
	stop            func() bool
	// A Cancel refused while held (cancelAsked) ends the telling of a
	// side whose guest can no longer run here after the hold (telling:
	// cutTelling), at once if it came before.
	cancelAsked bool
	cutTelling  context.CancelFunc
}

// holdable returns a context that ends with parent until hold; ignored
// is called (once per cancel, on its own goroutine) when parent ends
// after hold. If parent derives from a Cancel's context, the Cancel
// decides with c's hold from now on.
func holdable(parent context.Context, ignored func(cause error)) *heldCtx {
	c := &heldCtx{Context: context.WithoutCancel(parent), parent: parent, done: make(chan struct{})}
	if cc := cancelOf(parent); cc != nil {
		cc.add(c)
	}
	c.stop = context.AfterFunc(parent, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.held {
			ignored(context.Cause(parent))
			return
		}
		c.follow()
	})
	return c
}

// follow ends c if its parent ended and c is not held; the caller holds
// c.mu.
func (c *heldCtx) follow() {
	if c.held || c.err != nil {
		return
	}
	if err := c.parent.Err(); err != nil {
		c.end(err)
	}
}

// end ends c with err unless it is held or ended; the caller holds c.mu.
func (c *heldCtx) end(err error) {
	if c.held || c.err != nil {
		return
	}
	c.err = err
	close(c.done)
}

func (c *heldCtx) Deadline() (time.Time, bool) { return time.Time{}, false }
func (c *heldCtx) Done() <-chan struct{}       { return c.done }
func (c *heldCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.follow()
	return c.err
}

// hold detaches c from its parent for good, for post-copy's commit or
// pre-copy's (a Cancel refused from now on says which); false if c
// already ended, or its parent did (the caller was cancelled first and
// must behave as cancelled).
func (c *heldCtx) hold(postcopy bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.follow()
	if c.err != nil {
		return false
	}
	c.held, c.postcopy = true, postcopy
	return true
}

// cancelled returns err, the error Send's or Receive's run ended with,
// the side's handover having ended at ho, marked as a cancel's (wrapping
// context.Canceled, so reportStatus says cancelled) when c ended on a
// cancel before any hold and err would report a plain failure. A cancel
// breaks what the side waits on as it ends c (its goroutines' contexts
// follow c a moment later, a transport whose session ends with the
// cancelled call answers "closed"), and whichever the side notices
// first must not decide the report: QEMU likewise keeps a cancelling
// migration from turning failed. Whether err reports a plain failure is
// reportStatus's verdict, as for the report itself: with ho failed, an
// error from outside the engine that wraps one of its sentinels (a
// VMM's SaveState or LoadState error) is a plain failure and is marked
// too; before, status alone judged it, left it unmarked, and the side
// reported failed, not cancelled (TestCancelledForeignSentinel). A
// handover-unknown or post-copy-broken error, in that handover, stays
// as it is. It cannot tell a failure that came just before the cancel
// from one the cancel caused: both end cancelled (a Cancel that took
// says so too).
func (c *heldCtx) cancelled(err error, ho Handover) error {
	if err == nil || reportStatus(err, ho) != StatusFailed {
		return err
	}
	cerr := c.Err()
	if !errors.Is(cerr, context.Canceled) {
		return err // not ended, held, or ended by a deadline
	}
	cause := context.Cause(c.parent)
	if cause == nil || errors.Is(cause, context.Canceled) {
		return fmt.Errorf("%w (%w)", err, cerr)
	}
	return fmt.Errorf("%w (%w: %v)", err, cerr, cause)
}

// caller is the caller's context: it ends with the caller's cancel or
// deadline, held or not. After the hold only a wait that nothing of the
// guest depends on may run under it: a post-copy destination's telling
// its source how post-copy ended (pcRecv.tellSettled, tellBroken), and
// not the short wait for the answer on the session that carried it: a
// caller cancelled (or past its deadline) earlier in post-copy is done
// already when the telling starts. A Cancel that finds the side held
// cancels nothing, so it does not reach such a wait; a plain cancel of
// the caller's context does.
func (c *heldCtx) caller() context.Context { return c.parent }

// telling returns the context a held side tells its source under once
// its guest can never run here (a post-copy destination whose Resume at
// COMMIT failed: pcRecv.commit): it ends with the caller's context
// (caller) and with a Cancel, which stays refused (the migration goes on
// to its end, failed) but ends this wait, so that a VMM's migrate-cancel
// or its shutdown need not wait out the telling; a Cancel refused
// before the call ends it at once. The caller cancels it when done.
func (c *heldCtx) telling() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(c.parent)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cutTelling = cancel
	if c.cancelAsked {
		cancel()
	}
	return ctx, cancel
}

// refuseCancel records a Cancel refused while held and ends the
// telling, if one runs (telling); the caller holds c.mu.
func (c *heldCtx) refuseCancel() {
	c.cancelAsked = true
	if c.cutTelling != nil {
		c.cutTelling()
	}
}

// release stops following the parent (the migration is over).
func (c *heldCtx) release() { c.stop() }
