package engine

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// TestStallWatch: the watch ends its context with errStalled once
// nothing moved for its limit, never while something keeps moving, and
// stalledLink makes what that ended a linkError (post-copy reconnects)
// unless the migration's own context ended.
func TestStallWatch(t *testing.T) {
	w := stallWatch{limit: 80 * time.Millisecond}
	ctx := context.Background()
	wctx, stop := keepMoving(t, &w, ctx)
	select {
	case <-wctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("no progress, and the watch did not end the context")
	}
	err := stalledLink(ctx, wctx, wctx.Err())
	if !isLink(err) || !errors.Is(err, errStalled) {
		t.Fatalf("stalledLink = %v, want a linkError wrapping errStalled", err)
	}
	stop()

	other := errors.New("not a stall")
	wctx, stop = w.watch(ctx)
	if err := stalledLink(ctx, wctx, other); err != other {
		t.Errorf("stalledLink changed %v", err)
	}
	stop()
	if err := stalledLink(ctx, wctx, context.Canceled); isLink(err) {
		t.Errorf("a watch that was stopped is not a stall: %v", err)
	}
}

// keepMoving starts w's watch and makes progress every 10 ms for 200 ms
// (well past w.limit), then stops moving; the watch must not end its
// context meanwhile. A loaded machine may hold this goroutine for
// w.limit between two calls to moved, and then the watch is right to
// end it: such a try proves nothing and is made again, up to 20 times.
// A watch that ends while every gap stayed under w.limit fails the test.
func keepMoving(t *testing.T, w *stallWatch, ctx context.Context) (context.Context, func()) {
	t.Helper()
	for range 20 {
		// since is no later than the last progress the watch can have
		// seen when it ends: the call to moved before the last check
		// that found the context alive.
		since := time.Now()
		wctx, stop := w.watch(ctx)
		last := since
		for end := since.Add(200 * time.Millisecond); time.Now().Before(end); {
			time.Sleep(10 * time.Millisecond)
			if wctx.Err() != nil {
				break
			}
			since, last = last, time.Now()
			w.moved()
		}
		if wctx.Err() == nil {
			return wctx, stop
		}
		stop()
		if time.Since(since) < w.limit {
			t.Fatalf("ended while progress was made (nothing paused for %v): %v", w.limit, context.Cause(wctx))
		}
		t.Logf("nothing moved for %v, past the %v limit (a loaded machine): trying again", time.Since(since).Round(time.Millisecond), w.limit)
	}
	t.Fatal("20 tries in a row held past the limit: the machine is too loaded to tell")
	return nil, nil
}

// TestStallWatchCountsFirstCheck: a count that grew between the watch's
// start and its first check is progress too. The watch counts from its
// start, but took its first count only at its first check (limit/8
// later) as the value to compare with, so what moved before that passed
// for nothing: a destination whose pages kept coming for most of a
// limit/8 after a message, then paused for 7/8 of the limit, was taken
// for stalled (nothing had moved for 7/8 of StallTimeout).
func TestStallWatchCountsFirstCheck(t *testing.T) {
	const limit = 800 * time.Millisecond
	w := stallWatch{limit: limit}
	var n atomic.Uint64
	wctx, stop := w.watchCounting(context.Background(), func(context.Context) (uint64, error) { return n.Load(), nil })
	defer stop()
	// The bytes move once, before the first check (at limit/8), and not
	// at once: the watch's goroutine has started by then.
	time.Sleep(limit / 16)
	moved := time.Now()
	n.Add(4096)
	select {
	case <-wctx.Done():
	case <-time.After(10 * limit):
		t.Fatal("the count stood still, and the watch did not end the context")
	}
	if d := time.Since(moved); d < limit {
		t.Fatalf("stalled %v after the count last grew, under the %v limit: %v", d.Round(time.Millisecond), limit, context.Cause(wctx))
	}
}

// TestStallWatchCountsNotAtStart: a watch asks its count first a tick
// (limit/8) after it starts, not at once: the destination starts one per
// message it receives (recvWatched), and a count at each start was a
// Stats call per message.
func TestStallWatchCountsNotAtStart(t *testing.T) {
	w := stallWatch{limit: time.Hour}
	var calls atomic.Int64
	for range 100 {
		_, stop := w.watchCounting(context.Background(), func(context.Context) (uint64, error) {
			calls.Add(1)
			return 0, nil
		})
		stop()
	}
	if n := calls.Load(); n != 0 {
		t.Fatalf("%d counts for 100 watches started and stopped at once; want none", n)
	}
}

// TestStallWatchAnsweredThenStopped: nothing moves; the transport's
// count answers (the same figure) for a while, then its plugin stops
// (the count blocks until the watch ends). By the stall it has answered
// nothing for far longer than a slow plugin takes: the stall is this
// side's (selfStall). Before, an answer after the last progress, however
// long ago, kept the side from blaming its plugin
// (TestEmbedPrecopyPluginStopped failed 1 run in 4: the source sent
// ABORT into its stopped plugin and named the peer).
func TestStallWatchAnsweredThenStopped(t *testing.T) {
	const limit = 800 * time.Millisecond
	w := stallWatch{limit: limit}
	stopAt := time.Now().Add(300 * time.Millisecond)
	wctx, stop := w.watchCounting(context.Background(), func(ctx context.Context) (uint64, error) {
		if time.Now().Before(stopAt) {
			return 42, nil
		}
		<-ctx.Done()
		return 0, ctx.Err()
	})
	defer stop()
	select {
	case <-wctx.Done():
	case <-time.After(10 * limit):
		t.Fatal("the count stopped, and the watch did not end the context")
	}
	if cause := context.Cause(wctx); !errors.Is(cause, errStalled) || !selfStopped(cause) {
		t.Fatalf("cause %v: want a stall of this side's own transport (selfStall)", cause)
	}
}
