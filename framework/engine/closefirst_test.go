package engine

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/vmtest"
)

// heldLane is the destination's transport whose first session, once
// COMMIT arrived, reports nothing more on its landed lane: post-copy's
// pages land but Landed holds them, as a transport whose lane stopped
// while its connection stays up. The destination's stall watch takes
// that session for dead with its connection up. The held Landed call
// returns when the session is closed (end "closed"), or when the test
// gives up on that after heldBound (end "released", an error: the
// destination was waiting for the lane instead of closing).
type heldLane struct {
	transport.Transport
	committed atomic.Bool

	mu       sync.Mutex
	sessions int           // sessions opened
	held     chan struct{} // closed when the first session ends
	end      string        // how the held Landed call ended: "closed", "released"; "" none held
}

// heldBound is how long heldLane holds a Landed call at most: far
// beyond the stall and the close that should follow it, far short of
// the drain timeout the test sets.
const heldBound = 30 * time.Second

func (h *heldLane) Open(ctx context.Context, req transport.OpenRequest) error {
	h.mu.Lock()
	h.sessions++
	h.mu.Unlock()
	return h.Transport.Open(ctx, req)
}

func (h *heldLane) RecvMessage(ctx context.Context) (transport.Message, error) {
	m, err := h.Transport.RecvMessage(ctx)
	if err == nil && m.Kind == msgCommit {
		h.committed.Store(true)
	}
	return m, err
}

// Landed is called by the destination's landed lane alone.
func (h *heldLane) Landed(ctx context.Context) ([]transport.PageRun, error) {
	h.mu.Lock()
	hold := h.committed.Load() && h.sessions == 1 && h.end == ""
	h.mu.Unlock()
	if !hold {
		return h.Transport.Landed(ctx)
	}
	t := time.NewTimer(heldBound)
	defer t.Stop()
	select {
	case <-h.held:
		h.mu.Lock()
		h.end = "closed"
		h.mu.Unlock()
		return nil, transport.ErrClosed
	case <-t.C:
		h.mu.Lock()
		h.end = "released"
		h.mu.Unlock()
		return nil, errors.New("test: held landed lane released, the session was never closed")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (h *heldLane) Close() error {
	h.mu.Lock()
	if h.sessions == 1 {
		select {
		case <-h.held:
		default:
			close(h.held)
		}
	}
	h.mu.Unlock()
	return h.Transport.Close()
}

// TestPostcopyDeadSessionClosedFirst: a destination that takes a
// session for dead while its connection is up (here its stall watch:
// the lane reports nothing after COMMIT) closes that session first and
// then drains the lane, which the close ends; it does not first wait
// for a lane that only a close ends. pcDrainTimeout is set far beyond
// the test's bound, so a destination that waited for the lane before
// closing is seen waiting (the lane released by the test, end
// "released"), whatever the machine's speed. Every page still arrives:
// what the held session did not report is MISSING and sent again.
// Until 2026-12-07 every such reconnect waited pcDrainTimeout (5 s)
// before the close (TestEmbedPostcopyDestinationClosesDeadSession: the
// source saw the break 5.0 s after the refusal).
func TestPostcopyDeadSessionClosedFirst(t *testing.T) {
	old := pcDrainTimeout
	pcDrainTimeout = time.Hour
	t.Cleanup(func() { pcDrainTimeout = old })
	h := &heldLane{held: make(chan struct{})}
	var src *vmtest.VM
	r, dst := bothEnginesWrapped(t, func(str transport.Transport, v *vmtest.VM) transport.Transport { src = v; return str },
		func(dtr transport.Transport) transport.Transport { h.Transport = dtr; return h },
		func(sopt, dopt *Options) {
			sopt.StallTimeout, dopt.StallTimeout = 2*time.Minute, time.Second
		})
	h.mu.Lock()
	end := h.end
	h.mu.Unlock()
	switch end {
	case "":
		t.Fatalf("no landed call was held after COMMIT: the test proves nothing; destination %s (%v)", r.drep.Status, r.derr)
	case "released":
		t.Errorf("the destination took the session for dead but waited for its landed lane before closing it "+
			"(the test released the lane after %v)", heldBound)
	}
	completedAfter(t, r, src, dst, 1, "MISSING named what the held session did not report")
}
