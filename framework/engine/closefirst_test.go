package engine

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
)

// heldLane is the destination's transport whose first session, once
// LOADED went out, reports nothing more on its landed lane: post-copy's
// pages land but Landed holds them, as a transport whose lane stopped
// while its connection stays up. (Nothing lands between LOADED and
// COMMIT: the bulk pass's reports were drained before LOADED, the
// source pushes only once RUNNING answered its COMMIT, and the guest
// faults only once it runs. Marked at COMMIT's arrival instead, a push
// could land and be reported before the mark.) What a Landed call that
// began before LOADED gets after it is not returned (dropped: the lane
// that stopped reports none of it, also when the pushed pages all land
// while that call waits); the call is held instead. The destination's
// stall watch takes that session for dead with its connection up. The
// held Landed call returns when the session is closed (end "closed"),
// or when the test gives up on that after heldBound (end "released",
// an error: the destination was waiting for the lane instead of
// closing).
type heldLane struct {
	transport.Transport
	loaded atomic.Bool // LOADED went out

	mu       sync.Mutex
	sessions int           // sessions opened
	held     chan struct{} // closed when the first session ends
	end      string        // how the held Landed call ended: "closed", "released"; "" none held
	dropped  int           // pages reported by a call begun before LOADED, kept from the engine
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

func (h *heldLane) SendMessage(ctx context.Context, m transport.Message) error {
	if m.Kind == msgLoaded {
		h.loaded.Store(true)
	}
	return h.Transport.SendMessage(ctx, m)
}

// holds reports whether a Landed call now holds: LOADED went out on the
// first session, and no call was held yet.
func (h *heldLane) holds() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.loaded.Load() && h.sessions == 1 && h.end == ""
}

// Landed is called by the destination's landed lane alone.
func (h *heldLane) Landed(ctx context.Context) ([]transport.PageRun, error) {
	if !h.holds() {
		runs, err := h.Transport.Landed(ctx)
		if err != nil || !h.holds() {
			return runs, err
		}
		h.mu.Lock()
		h.dropped += pagesOf(runs) // LOADED went out while it waited: the stopped lane reports none of it
		h.mu.Unlock()
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

// TestPostcopyDeadSessionClosedFirst: a destination that takes a session
// for dead while its connection is up (here its stall watch: the lane
// reports nothing after LOADED, heldLane) closes that session first and
// then drains the lane, which the close ends; it does not first wait for
// a lane that only a close ends. pcDrainTimeout is set far beyond the
// test's bound, so a destination that waited for the lane before closing
// is seen waiting (the lane released by the test, end "released"),
// whatever the machine's speed. Every page still arrives: what the held
// session did not report is MISSING and sent again. The source's
// transport writes a page during the bulk pass (dirtyBulk), so that
// post-copy owes one whatever the guest's writer did: with none owed the
// destination completed at COMMIT, no Landed call held (6 of 300 runs,
// before), and a push that landed whole while a Landed call begun before
// COMMIT waited was reported by it (1 of 300 runs), both failing as
// proving nothing. Until 2026-12-07 every such reconnect waited
// pcDrainTimeout (5 s) before the close
// (TestEmbedPostcopyDestinationClosesDeadSession: the source saw the
// break 5.0 s after the refusal).
func TestPostcopyDeadSessionClosedFirst(t *testing.T) {
	old := pcDrainTimeout
	pcDrainTimeout = time.Hour
	t.Cleanup(func() { pcDrainTimeout = old })
	h := &heldLane{held: make(chan struct{})}
	b := &dirtyBulk{}
	r, dst := bothEnginesWrapped(t, b.wrap, func(dtr transport.Transport) transport.Transport { h.Transport = dtr; return h },
		func(sopt, dopt *Options) {
			sopt.StallTimeout, dopt.StallTimeout = 2*time.Minute, time.Second
		})
	h.mu.Lock()
	end, dropped := h.end, h.dropped
	h.mu.Unlock()
	t.Logf("destination %s (%v); %d pages reported by a Landed call begun before LOADED, dropped", r.drep.Status, r.derr, dropped)
	b.owedSent(t)
	switch end {
	case "":
		t.Fatalf("no landed call was held after LOADED: the test proves nothing; destination %s (%v)", r.drep.Status, r.derr)
	case "released":
		t.Errorf("the destination took the session for dead but waited for its landed lane before closing it "+
			"(the test released the lane after %v)", heldBound)
	}
	completedAfter(t, r, b.src, dst, 1, "MISSING named what the held session did not report")
}
