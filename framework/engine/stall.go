package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
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
// transport did not answer either: no count answered during the whole
// stalled interval (mute says how: the last count's error, or how long
// the one in flight has waited). Its plugin is then the likelier one
// to have stopped, and stalledError says so; the stall itself wraps
// errStalled.
type selfStall struct {
	error
	mute error
}

func (s selfStall) Unwrap() error { return s.error }

// selfStopped reports whether err is a stall found while this side's
// own transport gave no answer at all for the whole StallTimeout (a
// selfStall): its plugin stopped (SIGSTOP), hangs, or died. The side
// that fails on it asks it nothing more, no ABORT (the peer learns of
// the end when this side's transport closes: a launched plugin that is
// stopped, or that left a Stats call unanswered, is killed at once; or
// at the peer's own stall bound) and no last Stats (the report keeps
// the counters last seen), each of which would wait its whole bound for
// nothing. A plugin that is only slow (its Stats answers, late, within
// the StallTimeout) is not taken for stopped: that side sends ABORT and
// asks for its last Stats. What it cannot tell: a plugin whose Stats
// answers but whose other calls hang; and a plugin that answered during
// the stalled interval and stopped after (it counted while nothing
// moved, as between two passes, then stopped): that side blames its
// peer and still sends ABORT and asks for the last Stats, each of which
// then waits its whole bound (ABORT 2 s; the last Stats 1 s on the
// destination, 5 s on the source).
func selfStopped(err error) bool {
	var s selfStall
	return errors.As(err, &s)
}

// countResult is a count's outcome, as watchCounting's checks see it.
type countResult struct {
	n      uint64
	err    error
	seq    uint64    // counts ended so far
	at     time.Time // when the last count that answered ended
	asking time.Time // when the count in flight began (zero: none)
}

// watchCounting is watch that also asks count (if not nil), from a
// goroutine of its own, one call after another at most every limit/8,
// the first limit/8 after the start:
// an answered value other than the one before is progress, and so is
// the first (what moved since the watch began cannot be told apart).
// A stall is found never early, and up to 3/8 of limit late: the first
// count comes a tick after the start, the check that takes its answer
// for progress may be the tick after that, and a check a hair short of
// limit waits one more tick (an 800 ms watch whose count never changes
// ends after 0.9 to 1.1 s). A transport's byte
// count grows while pages move although no call returns and no message
// arrives (a long Flush, a destination whose transport writes pages on
// its own). A count that fails is no progress. The checks do not wait
// for a count, which may take as long as it needs (a slow plugin's
// Stats answers late, and that still tells it is not stopped); count
// gets the watch's context and must return when it ends. If no count
// answered during the whole stalled interval, the cause is a selfStall.
// stop joins the goroutines.
func (w *stallWatch) watchCounting(ctx context.Context, count func(context.Context) (uint64, error)) (wctx context.Context, stop func()) {
	w.moved()
	wctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var res countResult
	if count != nil {
		wg.Go(func() {
			t := time.NewTicker(w.limit / 8)
			defer t.Stop()
			for {
				// The first count waits a tick too: a watch starts per
				// message received (recvWatched), and a count at each
				// start would be a Stats call per message.
				select {
				case <-t.C:
				case <-wctx.Done():
					return
				}
				mu.Lock()
				res.asking = time.Now()
				mu.Unlock()
				n, err := count(wctx)
				mu.Lock()
				res.n, res.err, res.asking = n, err, time.Time{}
				if res.seq++; err == nil {
					res.at = time.Now()
				}
				mu.Unlock()
			}
		})
	}
	wg.Go(func() {
		t := time.NewTicker(w.limit / 8)
		defer t.Stop()
		var last, seen uint64
		counted := false
		for {
			select {
			case <-t.C:
				mu.Lock()
				r := res
				mu.Unlock()
				if r.seq != seen && r.err == nil && (!counted || r.n != last) {
					// The first answer has nothing to compare with, and
					// what moved since the watch began cannot be told
					// from nothing: it is progress. (Taken as the
					// baseline, it made a pause of 7/8 of limit a stall.)
					w.moved()
					last, counted = r.n, true
				}
				seen = r.seq
				if err := w.stalled(); err != nil {
					if mute := r.mute(count != nil, w.last.Load(), w.limit); mute != nil {
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
	})
	return wctx, func() { close(done); cancel(nil); wg.Wait() }
}

// mute says why the transport gave no answer (nil: it answers, or
// nothing counts): it answered no count after since (UnixNano, the last
// progress; an answer that was itself the progress is not after it), or
// its last answer is older than 3/4 of limit while a count waits or
// failed. A plugin that answered after the progress and then stopped is
// mute too: 3/4 of the stall limit is far beyond a slow plugin's answer
// (TestSlowStatsNotStopped: 1.5 s of 3 s), and well inside what a
// stopped one leaves unanswered by the stall (TestEmbedPrecopyPluginStopped:
// its last answer came with the last pages; before, that answer alone
// kept the side from blaming its plugin).
func (r countResult) mute(counting bool, since int64, limit time.Duration) error {
	answered := r.at.UnixNano() > since
	waiting := !r.asking.IsZero() || r.err != nil
	switch {
	case !counting || answered && (!waiting || time.Since(r.at) < limit*3/4):
		return nil
	case !r.asking.IsZero():
		return fmt.Errorf("no answer to a Stats call for %v", time.Since(r.asking).Round(time.Millisecond))
	case r.err != nil:
		return r.err
	}
	return errors.New("no answer to a Stats call")
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
