package engine

import (
	"context"
	"errors"
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
	wctx, stop := w.watch(ctx)
	for range 20 { // 200 ms of progress every 10 ms
		time.Sleep(10 * time.Millisecond)
		w.moved()
	}
	if wctx.Err() != nil {
		t.Fatalf("ended while progress was made: %v", context.Cause(wctx))
	}
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
