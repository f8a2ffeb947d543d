package hint

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// window is the VMM's Host as one hint window serves it to a plugin
// process, which the VMM need not trust:
//
//	plugin's calls ──► enter: one at a time, a few waiting, more refused ──► the VMM's Host
//	window's end (Close(final), the next Configure, Kill) ──► hostService.stop:
//	    the server's Stop ends the calls' contexts and waits for their
//	    handlers, then end: nothing enters any more, and
//	    DONE if a balloon hint session began after the last DONE
//
// So the guest gets its hinted blocks back however the provider behaved
// (it crashed, stopped, hung in Close, or never sent DONE), and the VMM
// sees at most one call at a time and none after the window ended.
//
// A BalloonDone ends the BalloonHint in flight (its context) before it
// waits its turn: in a VMM's balloon a DONE ends a running session (the
// reference VMM's DoneHintContext makes it idle), and a provider sends it from
// Close while its Hints may still wait for the guest (the engine closes
// the window before it collects its calls). Without that, the DONE waited
// for the session's deadline, longer than Close's bound if the job set a
// long one, and Close failed.
//
// A hint session is ring-0 work in the guest (it takes its free pages
// and reports them), so a window begins no more sessions than the
// engine asks for: one per Hints call it forwards (grant), plus
// balloonCredit (see there); a BalloonHint beyond is refused with
// errBalloonBudget, which costs that provider its hints and nothing
// else.
type window struct {
	impl    Host
	sem     chan struct{} // held by the call in flight; by end, for good
	waiting atomic.Int32  // calls waiting for sem

	mu       sync.Mutex
	closed   bool               // end began: nothing enters
	hinted   bool               // a BalloonHint began after the last BalloonDone that succeeded
	credit   int                // BalloonHint calls that may still begin a session
	scanEnd  uint64             // where the last CMMA scan step since the last grant ended (scanned)
	ramEnd   uint64             // the frame past guest RAM; no scan step ends beyond it
	grants   uint64             // grant calls so far (scanned)
	stopHint context.CancelFunc // ends the BalloonHint in flight; nil: none
}

const (
	// maxWaiting bounds the calls that wait for the one in flight; more
	// are refused at once. A provider keeps to one call at a time, plus
	// Close's DONE while a Hints's session ends (the DONE ends it).
	maxWaiting = 4
	// doneTimeout bounds the DONE a window's end sends.
	doneTimeout = 5 * time.Second
	// balloonCredit bounds the balloon hint sessions a window begins
	// beyond one per Hints call: a provider runs one session in each
	// Hints (plugins/balloon), and may run a few elsewhere (in
	// Configure, a retry). A window starts with balloonCredit; each
	// Hints call adds one, up to balloonCredit; each session takes one.
	// So a provider that calls BalloonHint in a loop makes the guest
	// hint no more often than the engine asks it for hints (once per
	// pass), plus balloonCredit.
	balloonCredit = 4
)

var (
	// errBusy refuses a call while maxWaiting others wait.
	errBusy = errors.New("the VMM runs one capability call at a time; too many are waiting")
	// errBalloonBudget refuses a BalloonHint beyond balloonCredit. It is
	// no ErrNotSupported: the provider may run a session in its next Hints.
	errBalloonBudget = errors.New("the VMM runs one balloon free page hint session per hints request (and a few more per window); " +
		"this one is refused: call BalloonHint once in each Hints")
)

var _ Host = (*window)(nil)

// newWindow serves impl for a guest whose RAM ends at frame ramEnd (0:
// not known; no CMMA answer then counts as a scan's step).
func newWindow(impl Host, ramEnd uint64) *window {
	return &window{impl: impl, sem: make(chan struct{}, 1), credit: balloonCredit, ramEnd: ramEnd}
}

// ramEnd is the frame past the guest's last RAM frame: the end of its
// highest region.
func ramEnd(rs []Region) uint64 {
	var end uint64
	for _, r := range rs {
		end = max(end, (r.GPA+r.Size)/PageSize)
	}
	return end
}

// grant lets the provider begin one more balloon hint session: the host
// asks it for hints (grpcClient.Hints).
func (w *window) grant() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.credit = min(w.credit+1, balloonCredit)
	w.scanEnd = 0
	w.grants++
}

// granted returns how many hints requests the window has had (grant).
func (w *window) granted() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.grants
}

// enter waits for the window's one call, or fails: window ended, too
// many waiting, or ctx ended. leave gives it back.
func (w *window) enter(ctx context.Context) error {
	if w.waiting.Add(1) > maxWaiting {
		w.waiting.Add(-1)
		return errBusy
	}
	defer w.waiting.Add(-1)
	select {
	case w.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	w.mu.Lock()
	closed := w.closed
	w.mu.Unlock()
	if closed {
		w.leave()
		return errWindowClosed
	}
	return nil
}

func (w *window) leave() { <-w.sem }

// end ends the window once its calls have returned (hostService.stop),
// and sends the DONE it owes the guest, bounded by doneTimeout.
func (w *window) end() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	w.sem <- struct{}{} // free: the handlers returned; held for good
	w.mu.Lock()
	owed := w.hinted
	w.hinted = false
	w.mu.Unlock()
	if owed {
		ctx, cancel := context.WithTimeout(context.Background(), doneTimeout)
		defer cancel()
		_ = w.impl.BalloonDone(ctx) // nothing to do if it fails: the window is over
	}
}

// BalloonHint implements Host.BalloonHint: the window owes DONE from
// here on, unless the VMM has no balloon. A call beyond the window's
// credit is refused (errBalloonBudget).
func (w *window) BalloonHint(ctx context.Context) ([]GPARange, error) {
	if err := w.enter(ctx); err != nil {
		return nil, err
	}
	defer w.leave()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w.mu.Lock()
	if w.credit == 0 {
		w.mu.Unlock()
		return nil, errBalloonBudget
	}
	w.credit--
	owed := w.hinted
	w.hinted, w.stopHint = true, cancel
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.stopHint = nil
		w.mu.Unlock()
	}()
	rs, err := w.impl.BalloonHint(ctx)
	if errors.Is(err, ErrNotSupported) { // no balloon: this call began no session
		w.mu.Lock()
		w.hinted = owed
		w.mu.Unlock()
	}
	return rs, err
}

// BalloonDone implements Host.BalloonDone: it ends the BalloonHint in
// flight, if any, then waits its turn; once it succeeded, nothing is
// owed until the next BalloonHint.
func (w *window) BalloonDone(ctx context.Context) error {
	w.mu.Lock()
	if w.stopHint != nil {
		w.stopHint()
	}
	w.mu.Unlock()
	if err := w.enter(ctx); err != nil {
		return err
	}
	defer w.leave()
	err := w.impl.BalloonDone(ctx)
	if err == nil || errors.Is(err, ErrNotSupported) {
		w.mu.Lock()
		w.hinted = false
		w.mu.Unlock()
	}
	return err
}

// CMMABits implements Host.CMMABits.
func (w *window) CMMABits(ctx context.Context, startGFN uint64, count int) (uint64, []byte, error) {
	if err := w.enter(ctx); err != nil {
		return 0, nil, err
	}
	defer w.leave()
	return w.impl.CMMABits(ctx, startGFN, count)
}

// scanned reports whether a CMMABits answer of n values from first, to
// a call that began when the window had had asked hints requests
// (granted), is a scan's step: at least minRefundedCMMA values, starting
// at or past where the last step since the last hints request (grant)
// ended. A provider's scan walks guest RAM once per Hints (plugins/cmma),
// so such steps add up to at most guest RAM per request, whatever the
// provider does; the host lets them past the broker's call rate
// (hostServer). A call that began before the last request is none: it
// belongs to the previous Hints (cancelled by a dirty sync while the VMM
// answered it, say), and counted it would hold the new request's scan to
// the rate up to where it ended. An answer that ends past guest RAM is
// none either: KVM's end in guest RAM, and a VMM that answers for any
// frame would otherwise let the steps go on without bound.
func (w *window) scanned(asked, first uint64, n int) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	end := first + uint64(n)
	if asked != w.grants || n < minRefundedCMMA || first < w.scanEnd || end < first || end > w.ramEnd { // end < first: past frame 2^64
		return false
	}
	w.scanEnd = end
	return true
}
