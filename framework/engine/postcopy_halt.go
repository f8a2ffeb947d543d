package engine

import (
	"errors"
	"fmt"
	"sync"

	"github.com/ferryvm/ferry/framework/internal/uffd"
)

// A post-copy destination that gives up halts the VM before it closes
// the userfaultfd (pcRecv.broken): closing it wakes every thread waiting
// on a page that never came, and those threads read a hole as zeros, a
// page dirtied after it was sent as its older copy. When Halt fails, the
// engine cannot know that those threads stopped, so it does not release
// them:
//
//	Halt ok   ─► stop the fault loop, close the userfaultfd, Postcopy(nil)
//	Halt fails ─► stop the fault loop, keep the userfaultfd open (notHalted)
//	              and the Toucher set, until this process exits: a thread
//	              on a page not mapped yet waits there for good
//
// With the fault loop stopped, no fault is served any more: not one on a
// missing page, nor the first touch of a page the destination holds
// (mapped into the guest only at its first fault: postcopy.Service.Hold).
// What it cannot do: stop the guest. vCPUs and device threads that reach
// only pages mapped before run on; the error (ErrNotHalted) says to end
// the destination VMM's process, which ends them and the userfaultfd
// together.

// ErrNotHalted is returned (wrapped, beside ErrPostcopyBroken) by
// Receive when post-copy broke for good and the destination VMM's
// PostcopyTarget.Halt failed (its error is in the text, not wrapped:
// halt): the guest may still run on the destination
// on the pages already mapped into it. The engine leaves the userfaultfd
// open and stops serving its faults, so a thread that reaches any other
// page (one the destination lacks, or one it holds that nothing touched
// since the switch) waits for good rather than running on zeros, but
// nothing else of the guest is stopped. End the destination VMM's
// process: its guest lacks pages only the source holds and must never
// run. Report.Status is StatusPostcopyBroken.
var ErrNotHalted = errors.New("the VM could not be halted")

// notHalted holds the userfaultfds of guests whose Halt failed: never
// closed, not even by the garbage collector (an unreachable uffd.FD's
// os.File would be closed by its cleanup), so the threads waiting on
// them wait until the process exits.
var notHalted struct {
	mu  sync.Mutex
	fds []*uffd.FD
}

// keepOpen keeps u open for the life of the process (notHalted).
func keepOpen(u *uffd.FD) {
	notHalted.mu.Lock()
	defer notHalted.mu.Unlock()
	notHalted.fds = append(notHalted.fds, u)
}

// halt halts the VM for pcRecv.broken. If Halt fails it marks pc as not
// halted (closeUffd then keeps the userfaultfd open, close keeps the
// Toucher) and returns cause wrapped in what the operator must know.
// Halt's error is said, not wrapped: it is the VMM's, and whatever it
// wraps (an engine sentinel, a context's error: a VMM may pass on an
// error it got from an earlier migration) must not decide how this one
// ended. Wrapped, one that wrapped ErrPostcopyCheck made status report
// a broken post-copy, its guest perhaps still running, completed, and
// one that wrapped ErrHandoverUnknown handover-unknown
// (TestPostcopyHaltErrorNotClassified). What a caller cannot do so:
// errors.Is on the VMM's own error through Receive's.
func (pc *pcRecv) halt(cause error) error {
	herr := pc.pt.Halt()
	if herr == nil {
		return cause
	}
	pc.notHalted = true
	err := fmt.Errorf("%w (Halt: %v): the guest may still run here on the pages already mapped into it; "+
		"threads that reach any other page wait for good (the userfaultfd stays open until this process exits, "+
		"its faults no longer served) instead of reading zeros; end this destination VMM's process now: the guest "+
		"here lacks pages only the source holds and must never run (the source keeps its paused copy); "+
		"post-copy broke: %w",
		ErrNotHalted, herr, cause)
	pc.r.opt.Log.Error("post-copy broken, and the VM could not be halted: end this VMM's process", "err", err,
		"pages_missing", pc.svc.Pending())
	return err
}
