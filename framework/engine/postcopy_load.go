package engine

import (
	"context"
	"errors"
	"fmt"
)

// loadState is LoadState in post-copy: after the last POSTCOPY chunk,
// before COMMIT, with guest RAM registered with userfaultfd. A LoadState
// that touches a page the source still owes waits in that fault until
// the page lands, which takes the source's answer; a source that stopped
// (its process or transport plugin, or a link that no longer moves,
// while the connection stays up) held it for ever, and this side, which
// reads no message meanwhile, with it. So it runs under the stall rule
// of the rest of pre-COMMIT (recvWatched): once no page landed (feedRuns)
// and the transport's byte count stood still for StallTimeout, and at
// least SwitchoverTimeout, it fails with errStalled. Its ctx also ends
// when the caller cancels or a post-copy goroutine fails
// (errPostcopySetup, watchSetup). And it fails at once when the session
// ends meanwhile (its landed lane or request sender ended: the source
// gave up or died, the connection was cut), as a cut before LOADED does
// between messages; the stall bound waited for a session already gone.
//
// When any of those comes first, LoadState may be blocked in a fault
// nobody will answer, and a fault does not end with a context: the
// session's goroutines stop and the userfaultfd closes (pc.release), which
// wakes it onto what the memfd holds there (a hole reads as zeros); then
// it is waited for. What it loaded is not used: the VM never ran here
// and never will (the caller fails, giveUp: ABORT, and the source, which
// still owns the VM before COMMIT, resumes it); Receive's caller
// discards it, as after any failure before LOADED.
//
// What it cannot do: end a LoadState that blocks on something other
// than guest RAM and ignores its ctx; that one still holds Receive, as
// in pre-copy. A LoadState that is slow without faulting is taken for a
// stall once the bound passed, but the source has given up by then: its
// switch-over deadline, from its pause to LOADED, is the same
// SwitchoverTimeout and began earlier.
func (pc *pcRecv) loadState(ctx context.Context, state []byte) error {
	r, s := pc.r, pc.sess
	pc.stall.limit = r.stallLimit()
	wctx, stop := pc.stall.watchCounting(ctx, r.wireBytes)
	done := make(chan error, 1)
	go func() { done <- r.dst.LoadState(wctx, state) }()
	var err, ended error
	finished := false
	select {
	case err = <-done:
		finished = true
	case <-wctx.Done():
	case <-s.feed.done:
		ended = fmt.Errorf("landed pages: %w", s.feed.err)
	case e := <-s.reqDone:
		s.reqDone <- e // stopSession reads it again
		ended = e
	}
	if !finished {
		pc.release() // wakes a fault nobody will answer; run's close takes the Toucher back
		err = <-done
	}
	cause := context.Cause(wctx) // before stop, which ends wctx anyway
	stop()
	return loadFailed(ctx, wctx, cause, err, ended, s.feed)
}

// loadFailed is loadState's error: err, LoadState's, unless the watch
// (cause), ctx or the session's end (ended; feed, its landed lane, says
// whether the fault service refused pages) ended it first.
func loadFailed(ctx, wctx context.Context, cause, err, ended error, feed *landedFeed) error {
	switch {
	case errors.Is(cause, errStalled):
		if err == nil {
			err = context.Canceled // woken or done, it has nothing to add
		}
		return stalledError(wctx, err, "while this destination's LoadState ran (it faults on pages only the source "+
			"holds), no page landed and nothing came from the source (its process or transport plugin stopped, "+
			"or the link no longer moves); this destination never ran the VM",
			"while this destination's LoadState ran, no page landed, and this side's transport plugin stopped "+
				"answering (its last Stats call: %v): it, not the source, is likely what stopped; this destination "+
				"never ran the VM")
	case ctx.Err() != nil:
		// Cancelled, or post-copy's goroutines failed: the cause says
		// which, and the report's status follows it.
		return fmt.Errorf("ended before LOADED: %w", context.Cause(ctx))
	case ended != nil && feed.fatal:
		return fmt.Errorf("%w: %w", errPostcopySetup, feed.err)
	case ended != nil:
		return fmt.Errorf("the session with the source ended while this destination's LoadState ran (it faults on "+
			"pages only the source holds); this destination never ran the VM: %w", ended)
	}
	return err
}
