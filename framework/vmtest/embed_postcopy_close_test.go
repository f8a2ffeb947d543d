package vmtest_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/vmtest"
	"github.com/ferryvm/ferry/transports/tcp"
)

// requestRefused is a destination's in-process TCP transport that
// refuses its first urgent send (a REQUEST) after COMMIT and keeps its
// session up, as a transport may: the call fails, the connection does
// not. The destination takes that session for dead and reconnects. It
// records how the landed lane's Landed call of that session ended: by
// the session's close, or by the cancel of its context, which the
// destination does only once it gave up waiting for the session to end
// (pcDrainTimeout, twice). CloseHoldingListeners is tcp's, promoted.
type requestRefused struct {
	*tcp.Transport
	committed atomic.Bool
	refusedAt atomic.Int64 // UnixNano of the refusal; 0: none yet

	mu      sync.Mutex
	laneEnd string // "closed" or "cancelled": the first Landed that failed after the refusal
}

func (r *requestRefused) RecvMessage(ctx context.Context) (transport.Message, error) {
	m, err := r.Transport.RecvMessage(ctx)
	if err == nil && m.Kind == engine.MsgCommit {
		r.committed.Store(true)
	}
	return m, err
}

func (r *requestRefused) SendUrgent(ctx context.Context, m transport.Message) error {
	if r.committed.Load() && r.refusedAt.CompareAndSwap(0, time.Now().UnixNano()) {
		return errors.New("test: urgent send refused, the session stays up")
	}
	return r.Transport.SendUrgent(ctx, m)
}

// Landed is called by the destination's landed lane alone.
func (r *requestRefused) Landed(ctx context.Context) ([]transport.PageRun, error) {
	runs, err := r.Transport.Landed(ctx)
	if err != nil && r.refusedAt.Load() != 0 {
		r.mu.Lock()
		if r.laneEnd == "" {
			r.laneEnd = "closed"
			if ctx.Err() != nil {
				r.laneEnd = "cancelled"
			}
		}
		r.mu.Unlock()
	}
	return runs, err
}

// TestEmbedPostcopyDestinationClosesDeadSession: the destination takes
// a session whose connection is still up for dead (a REQUEST its
// transport refused) and ends it at once (closeSession), under the
// session package as without it, so the source sees the break and
// reconnects; the migration completes page-exact. Until 2026-12-07 the
// session package's transport ignored that close and ended the session
// only at the next Open: the old session's landed lane was cancelled
// after pcDrainTimeout twice (10 s) instead of ending with its session,
// and the source, its connection up, kept waiting on it as long, the
// guest's faults with it (about 10 s after the refusal; 5 s with the
// close, while the destination first waited pcDrainTimeout for a lane
// that only the close ends, until it closed first, also 2026-12-07:
// a few milliseconds now).
func TestEmbedPostcopyDestinationClosesDeadSession(t *testing.T) {
	needUffd(t)
	src := newVM(t, vmtest.Options{Free: free, WriteEvery: time.Millisecond, WriteBatch: 16})
	var dst *vmtest.VM
	onResume, wait := toucher(&dst, func() []uint64 { return freePages(src) })
	dst = newVM(t, vmtest.Options{Incoming: true, WriteEvery: time.Millisecond, OnResume: onResume})
	sspec, dspec := postcopySpecs(t, engine.PostcopyOff, 8<<20)
	rr := &requestRefused{Transport: tcp.New(nil)}
	dspec.TransportInProcess, dspec.Transport.Path = rr, ""
	// Neither side's stall watch (30 s by default) ends the session in
	// this test: only the destination's close, or its next Open, does.
	start := make(chan struct{})
	sspec.Engine.StartPostcopy = start
	var once sync.Once
	var sourceSawBreak atomic.Int64
	sspec.Progress = func(p engine.Progress) {
		if p.Phase == engine.PhaseBulk && p.PagesSent > 256 {
			once.Do(func() { close(start) })
		}
		if p.Reconnecting > 0 {
			sourceSawBreak.CompareAndSwap(0, time.Now().UnixNano())
		}
	}
	srep, serr, drep, derr := run(src, dst, sspec, dspec)
	wait()
	refused := rr.refusedAt.Load()
	if refused == 0 {
		t.Skip("post-copy ended before the guest requested a page: nothing was refused")
	}
	if saw := sourceSawBreak.Load(); saw != 0 {
		t.Logf("the source saw the break %v after the refusal", time.Duration(saw-refused).Round(time.Millisecond))
	}
	checkPostcopy(t, src, dst, srep, drep, serr, derr)
	rr.mu.Lock()
	end := rr.laneEnd
	rr.mu.Unlock()
	if end != "closed" {
		t.Errorf("the refused session's landed lane ended %q, want closed: the destination took the session for dead "+
			"but did not end it, so its connection stayed up and the source waited on it", end)
	}
	if drep.Reconnects == 0 || srep.Reconnects == 0 {
		t.Errorf("reconnects: source %d, destination %d; want both", srep.Reconnects, drep.Reconnects)
	}
}
