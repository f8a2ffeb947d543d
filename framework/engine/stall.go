package engine

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// errStalled: nothing moved in a session for Options.StallTimeout. In
// post-copy the session is taken for broken (a linkError): closed and
// opened again, which starts a launched plugin anew. Before COMMIT the
// migration fails: the source keeps running the VM, the destination
// never ran it (sender.watchPeer, receiver.recvWatched).
var errStalled = errors.New("session stalled")

// stallWatch notices a session in which nothing moved for limit. A
// peer whose process stopped (or whose transport no longer makes
// progress) keeps its connection up: nothing breaks, nothing times out;
// before COMMIT the other side would wait until cancelled, and post-copy
// cannot be cancelled, so without a watch the guest would wait for ever
// on the pages it lacks. Whoever sees progress calls moved; it costs
// one atomic store.
type stallWatch struct {
	limit time.Duration
	last  atomic.Int64 // UnixNano of the last progress
}

func (w *stallWatch) moved() { w.last.Store(time.Now().UnixNano()) }

// idle is how long nothing moved.
func (w *stallWatch) idle() time.Duration { return time.Since(time.Unix(0, w.last.Load())) }

// stalled is errStalled, with how long, once nothing moved for limit;
// nil before.
func (w *stallWatch) stalled() error {
	if d := w.idle(); d >= w.limit {
		return fmt.Errorf("%w: nothing moved for %v (stall timeout %v)", errStalled, d.Round(time.Millisecond), w.limit)
	}
	return nil
}

// watch counts from now and returns a child of ctx that ends with the
// cause errStalled once nothing moved for limit; stop ends the watch
// (and the child).
func (w *stallWatch) watch(ctx context.Context) (wctx context.Context, stop func()) {
	return w.watchCounting(ctx, nil)
}

// selfStall is the cause of a stall found while this side's own
// transport did not answer either: the last count failed (mute says
// how). Its plugin is then the likelier one to have stopped, and
// stalledError says so; the stall itself wraps errStalled.
type selfStall struct {
	error
	mute error
}

func (s selfStall) Unwrap() error { return s.error }

// selfStopped reports whether err is a stall found while this side's
// own transport did not answer either (a selfStall). Its plugin then
// most likely stopped (SIGSTOP, a hang): the side that fails on it asks
// it nothing more, no ABORT (the peer learns of the end when this side's
// transport closes: a launched plugin's stopped process is killed at
// once; or at the peer's own stall bound) and no last Stats (the report
// keeps the counters last seen), each of which would wait its whole
// bound for nothing. What it cannot tell: a plugin that was only slow
// for a moment (a Stats call late by statsTimeout) is taken for stopped
// too, and its peer is not told why.
func selfStopped(err error) bool {
	var s selfStall
	return errors.As(err, &s)
}

// watchCounting is watch that also asks count (if not nil) at each of
// its checks, from its own goroutine: a value other than the one before
// is progress, and so is the first (what moved since the watch began
// cannot be told apart: a stall is found up to limit/8 late, never
// early). A transport's byte count grows while pages move although no
// call returns and no message arrives (a long Flush, a destination
// whose transport writes pages on its own). A count that fails is no
// progress; if the last one before the stall failed, the cause is a
// selfStall. count gets the watch's context, and should not block for
// long: a check waits for it. stop joins the goroutine.
func (w *stallWatch) watchCounting(ctx context.Context, count func(context.Context) (uint64, error)) (wctx context.Context, stop func()) {
	w.moved()
	wctx, cancel := context.WithCancelCause(ctx)
	done, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		t := time.NewTicker(w.limit / 8)
		defer t.Stop()
		var last uint64
		counted := false
		for {
			select {
			case <-t.C:
				var mute error
				if count != nil {
					// The first count has nothing to compare with, and
					// what moved since the watch began cannot be told
					// from nothing: it is progress. (Taken as the
					// baseline, it made a pause of 7/8 of limit a stall.)
					n, err := count(wctx)
					if mute = err; err == nil && (!counted || n != last) {
						w.moved()
						last, counted = n, true
					}
				}
				if err := w.stalled(); err != nil {
					if mute != nil {
						err = selfStall{err, mute}
					}
					cancel(err)
					return
				}
			case <-done:
				return
			case <-wctx.Done():
				return
			}
		}
	}()
	return wctx, func() { close(done); cancel(nil); <-exited }
}

// stalledError is err, from a call made under wctx, saying what
// stalled if the watch ended wctx: errStalled wrapped with peer, what
// the peer's stop looks like from here, or self (a format whose one %v
// takes the failure) if this side's own transport did not answer
// either (selfStall); err only named (a call cut short by the watch
// fails with context.Canceled, and the migration was not cancelled: its
// status must not say so), or left out when it is that. Other errors
// stay as they are.
func stalledError(wctx context.Context, err error, peer, self string) error {
	if err == nil {
		return nil
	}
	cause := context.Cause(wctx)
	if !errors.Is(cause, errStalled) {
		return err
	}
	what := peer
	var s selfStall
	if errors.As(cause, &s) {
		what = fmt.Sprintf(self, s.mute)
	}
	if errors.Is(err, context.Canceled) { // the watch's own end: nothing to add
		return fmt.Errorf("%w: %s", cause, what)
	}
	return fmt.Errorf("%w: %s (%v)", cause, what, err)
}

// stalledLink turns an error that a stalled watch caused (wctx ended
// with errStalled while ctx, the migration's, did not) into a linkError
// naming the stall; other errors stay as they are.
func stalledLink(ctx, wctx context.Context, err error) error {
	if err == nil || ctx.Err() != nil {
		return err
	}
	if cause := context.Cause(wctx); errors.Is(cause, errStalled) {
		return linkError{cause}
	}
	return err
}
