package vmm

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ferryvm/ferry/framework/hint"
	"github.com/ferryvm/ferry/vmm/devices/balloon"
)

// hintHost offers the VM's capabilities to hint providers (hint.Host).
type hintHost struct{ v *VM }

var _ hint.Host = hintHost{}

// rangeCollector gathers hinted ranges with their session ids, until it
// is closed.
type rangeCollector struct {
	mu     sync.Mutex
	ids    []uint32
	ranges []hint.GPARange
	closed bool
}

// HintRange implements balloon.HintSink.
func (c *rangeCollector) HintRange(id uint32, gpa, n uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.ids = append(c.ids, id)
	c.ranges = append(c.ranges, hint.GPARange{GPA: gpa, Size: n})
}

// close makes c take no range more: the device may still hold it as its
// sink (a BalloonHint that could not take it back, the device busy).
func (c *rangeCollector) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
}

// session returns the ranges hinted for id.
func (c *rangeCollector) session(id uint32) []hint.GPARange {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []hint.GPARange
	for i, r := range c.ranges {
		if c.ids[i] == id {
			out = append(out, r)
		}
	}
	return out
}

// BalloonHint implements hint.Host: one free page hint session, ended a
// little before ctx's deadline so the ranges still reach the engine in
// time. Its calls that begin the session wait for the device's lock
// under ctx (a vCPU may hold it: devices/balloon/lock.go): while the
// device stays busy it fails at ctx's end, its hints lost, never a
// page. The calls that end a session it began (StopHintContext, the sink let
// go) wait under their own bound instead (hintEndTimeout, from the end
// of the session's wait): they must happen though ctx ended, as it does
// when the engine cancels a hints call at a dirty sync or the hint
// window ends the call at the provider's BalloonDone, and a vCPU holds
// the lock for a moment at each of the guest's kicks. Before, they
// waited under ctx, so an ended ctx met by such a moment left the
// session running, the guest hinting, and the next BalloonHint refused
// until the guest stopped by itself (TestBalloonHintEndsSessionAfterCancel).
// A session it could not stop even then (the device held longer than
// that) ends with the provider's BalloonDone, or the DONE the hint
// window owes the guest.
func (h hintHost) BalloonHint(ctx context.Context) ([]hint.GPARange, error) {
	dev := h.v.balloon
	if dev == nil {
		return nil, fmt.Errorf("%w: this VM has no balloon device", hint.ErrNotSupported)
	}
	c := &rangeCollector{}
	if err := dev.SetHintSinkContext(ctx, c); err != nil {
		return nil, err
	}
	defer func() {
		c.close()
		ectx, cancel := hintEndContext(ctx)
		defer cancel()
		dev.SetHintSinkContext(ectx, nil)
	}()
	id, err := dev.StartHintContext(ctx)
	if err != nil {
		if errors.Is(err, balloon.ErrNoFreePageHint) {
			if st, serr := dev.HintStatusContext(ctx); serr == nil && st.State == "idle" {
				return nil, fmt.Errorf("%w: %v", hint.ErrNotSupported, err)
			}
		}
		return nil, err // a session already runs, or the device is busy
	}
	wctx := ctx
	if dl, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		wctx, cancel = context.WithDeadline(ctx, dl.Add(-time.Until(dl)/8))
		defer cancel()
	}
	dev.WaitHint(wctx) // the guest's STOP, or the (shortened) deadline
	ectx, cancel := hintEndContext(ctx)
	defer cancel()
	sum, err := dev.StopHintContext(ectx)
	if err != nil {
		return nil, fmt.Errorf("stop hint session %#x: %w", id, err)
	}
	if sum.Dropped > 0 {
		h.v.log.Warn("balloon: the guest hinted more ranges than a session takes; the rest were dropped (their pages are sent)",
			"cmd_id", fmt.Sprintf("%#x", id), "ranges", sum.Ranges, "dropped", sum.Dropped)
	}
	return c.session(id), nil
}

// hintEndTimeout bounds the wait for the device's lock of BalloonHint's
// calls that end its session, whether or not its context ended. On a
// source, where hints are asked, a vCPU holds the lock for a moment at
// a time; only a post-copy destination's vCPU, waiting for a page,
// holds it for long.
const hintEndTimeout = 2 * time.Second

// hintEndContext is the context of BalloonHint's calls that end its
// session: ctx's values, not its end, bounded by hintEndTimeout.
func hintEndContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), hintEndTimeout)
}

// BalloonDone implements hint.Host. It waits for the device's lock under
// ctx, and fails at its end while the device is busy (the hint window
// then still owes the guest its DONE: framework/hint window.go).
func (h hintHost) BalloonDone(ctx context.Context) error {
	if h.v.balloon == nil {
		return fmt.Errorf("%w: this VM has no balloon device", hint.ErrNotSupported)
	}
	_, err := h.v.balloon.DoneHintContext(ctx)
	return err
}

// CMMABits implements hint.Host: CMMA is an s390 facility.
func (h hintHost) CMMABits(context.Context, uint64, int) (uint64, []byte, error) {
	return 0, nil, fmt.Errorf("%w: CMMA is s390-only; this is an x86-64 VM", hint.ErrNotSupported)
}
