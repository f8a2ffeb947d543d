package vmm

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ferryvm/ferry/framework/hint"
)

// hintHost offers the VM's capabilities to hint providers (hint.Host).
type hintHost struct{ v *VM }

var _ hint.Host = hintHost{}

// rangeCollector gathers hinted ranges with their session ids.
type rangeCollector struct {
	mu     sync.Mutex
	ids    []uint32
	ranges []hint.GPARange
}

// HintRange implements balloon.HintSink.
func (c *rangeCollector) HintRange(id uint32, gpa, n uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ids = append(c.ids, id)
	c.ranges = append(c.ranges, hint.GPARange{GPA: gpa, Size: n})
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
// little before ctx's deadline so the ranges still reach the engine in time.
func (h hintHost) BalloonHint(ctx context.Context) ([]hint.GPARange, error) {
	dev := h.v.balloon
	if dev == nil {
		return nil, fmt.Errorf("%w: this VM has no balloon device", hint.ErrNotSupported)
	}
	c := &rangeCollector{}
	dev.SetHintSink(c)
	defer dev.SetHintSink(nil)
	id, err := dev.StartHint()
	if err != nil {
		if dev.HintStatus().State != "idle" || errors.Is(err, context.Canceled) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %v", hint.ErrNotSupported, err)
	}
	wctx := ctx
	if dl, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		wctx, cancel = context.WithDeadline(ctx, dl.Add(-time.Until(dl)/8))
		defer cancel()
	}
	dev.WaitHint(wctx) // the guest's STOP, or the (shortened) deadline
	if sum := dev.StopHint(); sum.Dropped > 0 {
		h.v.log.Warn("balloon: the guest hinted more ranges than a session takes; the rest were dropped (their pages are sent)",
			"cmd_id", fmt.Sprintf("%#x", id), "ranges", sum.Ranges, "dropped", sum.Dropped)
	}
	return c.session(id), nil
}

// BalloonDone implements hint.Host.
func (h hintHost) BalloonDone(context.Context) error {
	if h.v.balloon == nil {
		return fmt.Errorf("%w: this VM has no balloon device", hint.ErrNotSupported)
	}
	h.v.balloon.DoneHint()
	return nil
}

// CMMABits implements hint.Host: CMMA is an s390 facility.
func (h hintHost) CMMABits(context.Context, uint64, int) (uint64, []byte, error) {
	return 0, nil, fmt.Errorf("%w: CMMA is s390-only; this is an x86-64 VM", hint.ErrNotSupported)
}
