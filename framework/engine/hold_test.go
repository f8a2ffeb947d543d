package engine

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// TestHeldCtx: a heldCtx ends with its parent (cancel or deadline, with
// the parent's error) until hold; after hold the parent's end is only
// reported, and hold fails once the context ended.
func TestHeldCtx(t *testing.T) {
	parent, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	c := holdable(parent, func(error) { t.Error("ignored before hold") })
	<-c.Done()
	if !errors.Is(c.Err(), context.DeadlineExceeded) || c.hold(false) {
		t.Fatalf("after the parent's deadline: err %v", c.Err())
	}

	parent, cancel = context.WithCancel(context.Background())
	var ignored atomic.Int32
	c = holdable(parent, func(cause error) {
		if errors.Is(cause, context.Canceled) {
			ignored.Add(1)
		}
	})
	defer c.release()
	if !c.hold(false) {
		t.Fatal("hold failed on a live context")
	}
	cancel()
	child, stop := context.WithTimeout(c, 50*time.Millisecond)
	defer stop()
	<-child.Done()
	if c.Err() != nil || !errors.Is(child.Err(), context.DeadlineExceeded) {
		t.Fatalf("held: err %v, child %v", c.Err(), child.Err())
	}
	for deadline := time.Now().Add(10 * time.Second); ignored.Load() == 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond) // reported from the cancel's own goroutine, maybe late on a loaded machine
	}
	if ignored.Load() != 1 {
		t.Errorf("the ignored cancel was reported %d times", ignored.Load())
	}
}

// TestHeldCtxEndsAtOnce: once the parent's cancel returned, the heldCtx
// says so (Err, Done) and refuses hold, without waiting for the
// goroutine that follows the parent. Before, Err stayed nil and hold
// succeeded for a moment after the cancel: a COMMIT read then was taken
// although the caller had cancelled (TestReceiveCancelledAtCommit).
func TestHeldCtxEndsAtOnce(t *testing.T) {
	for i := 0; i < 100; i++ {
		parent, cancel := context.WithCancel(context.Background())
		c := holdable(parent, func(error) { t.Error("ignored: the cancel came before hold") })
		cancel()
		if !errors.Is(c.Err(), context.Canceled) {
			t.Fatalf("run %d: Err %v right after the cancel, want canceled", i, c.Err())
		}
		select {
		case <-c.Done():
		default:
			t.Fatalf("run %d: Err says canceled, Done is open", i)
		}
		if c.hold(false) {
			t.Fatalf("run %d: hold succeeded after the cancel", i)
		}
		c.release()

		parent, cancel = context.WithCancel(context.Background())
		c = holdable(parent, func(error) {})
		cancel()
		if c.hold(false) {
			t.Fatalf("run %d: hold (before any Err) succeeded after the cancel", i)
		}
		c.release()
	}
}
