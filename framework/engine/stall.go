package engine

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// errStalled: nothing moved in a post-copy session for
// Options.StallTimeout. The session is taken for broken (a linkError):
// closed and opened again, which starts a launched plugin anew.
var errStalled = errors.New("post-copy session stalled")

// stallWatch notices a post-copy session in which nothing moved for
// limit. A peer whose process stopped (or whose transport no longer
// makes progress) keeps its connection up: nothing breaks, nothing times
// out, and post-copy cannot be cancelled, so without a watch the guest
// would wait for ever on the pages it lacks. Whoever sees progress calls
// moved; it costs one atomic store.
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
	w.moved()
	wctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(w.limit / 8)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				if err := w.stalled(); err != nil {
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
	return wctx, func() { close(done); cancel(nil) }
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
