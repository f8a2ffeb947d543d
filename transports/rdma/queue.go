package rdma

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/wire"
	"github.com/ferryvm/ferry/transports/rdma/fabric"
)

// queue is one of the source's endpoints (bulk or urgent) as the paths
// post to it: the operations posted and not yet completed, at most maxIn.
// A destination's endpoint is a queue nothing is posted to (polled).
type queue struct {
	name     string // in errors: "" (bulk), "urgent endpoint: ", or why a destination's failed
	maxIn    int64
	inflight atomic.Int64 // writes and COMMITs posted, not completed
	progress chan struct{}

	// Who polls ep's completions (handing them to take): the session's
	// poller, except while a poster drives (drive). Then a poster that
	// waits for room polls ep itself, so a completion wakes the thread
	// that posts the next write, not the poller's thread, which would
	// then have to wake the poster: two more context switches per
	// completion, each a VM exit in a nested guest (BenchmarkTransport's
	// switches/GiB). polling is held around every Poll of ep.
	ep      *fabric.Endpoint
	take    func([]fabric.Completion) error
	driving atomic.Bool
	polling sync.Mutex
	resume  chan struct{} // the poster stopped driving

	commitEarly bool           // tests only: each COMMIT before its writes (must be caught)
	deferred    []func() error // commitEarly: the writes held back
	pace        func()         // tests only: called before each Poll of ep (pollOnce); may block
	driveWait   func()         // tests only: called as a driving poster polls in waitOn, holding polling; may block
}

func (q *queue) init(name string, ep *fabric.Endpoint, take func([]fabric.Completion) error) {
	q.name, q.ep, q.take = name, ep, take
	q.maxIn = int64(min(max(ep.Caps().TxSize-1, 1), 64))
	q.progress = make(chan struct{}, 1)
	q.resume = make(chan struct{}, 1)
}

// ctxWrite in the low 16 bits of a write's completion context, on
// either of the source's endpoints; the pages it writes above them (at
// most writeChunk's), for Stats and PROGRESS.
const ctxKindMask = 1<<16 - 1

// writeCtx is the completion context of a write of chunk (whole pages).
func writeCtx(chunk []byte) uint64 { return ctxWrite | uint64(len(chunk)/pageSize)<<16 }

// writesCompleted counts the data pages of the writes among a source
// endpoint's completions cs (their contexts are writeCtx's) in Stats, as
// written to the network, and returns them. Its caller calls it before
// the completions leave inflight, so a caller that waited for inflight
// to reach 0 (Flush) finds every write counted.
func (s *session) writesCompleted(cs []fabric.Completion) uint64 {
	var pages uint64
	for _, c := range cs {
		if c.Ctx&ctxKindMask == ctxWrite {
			pages += c.Ctx >> 16
		}
	}
	if pages > 0 {
		s.stats.data.Add(pages)
		s.stats.wire.Add(pages * pageSize)
	}
	return pages
}

// polled is a destination's endpoint ep as session.poll polls it: take
// gets its completions, name begins a failed poll's error.
func polled(name string, ep *fabric.Endpoint, take func([]fabric.Completion) error) *queue {
	return &queue{name: name, ep: ep, take: take}
}

// drive makes the calling goroutine poll q's completions whenever it
// waits on q (waitOn) until it calls standBack; the session's poller
// stands back meanwhile. Only one goroutine may drive q, and only while
// it keeps posting or waiting for completions: an operation posted but
// not yet moved moves only inside a call into the provider (buffers.go).
func (q *queue) drive() { q.driving.Store(true) }

// away stands back while a driving poster waits for something other
// than q's completions; back drives again.
func (q *queue) away() (back func()) {
	if !q.driving.Load() {
		return func() {}
	}
	q.standBack()
	return q.drive
}

// standBack hands q's polling back to the session's poller.
func (q *queue) standBack() {
	q.driving.Store(false)
	wake(q.resume)
}

// postOn posts one operation on q, waiting for room.
func (s *session) postOn(ctx context.Context, q *queue, op func() error) error {
	for {
		if q.inflight.Load() < q.maxIn {
			q.inflight.Add(1)
			err := op()
			if err == nil {
				return nil
			}
			q.inflight.Add(-1)
			if err != fabric.ErrAgain {
				s.fail(fmt.Errorf("fabric: %s%w: %w", q.name, err, transport.ErrClosed), wire.CodeFailed)
				return s.Err()
			}
		}
		if err := s.waitOn(ctx, q); err != nil {
			return err
		}
	}
}

// waitOn waits for a completion on q (or 5ms), the session's end or ctx.
// A driving poster polls q's endpoint itself when the poller is not in
// a Poll (for up to pollBusy), and then looks at the session's end too:
// a peer that ended the session (its ABORT read on a control channel)
// and stopped polling leaves the writes in flight neither completed nor
// failed while its endpoint stays open, so the polls alone would go on
// until ctx ended (TestDrivingCallSeesEnd).
func (s *session) waitOn(ctx context.Context, q *queue) error {
	if q.driving.Load() && q.polling.TryLock() {
		if q.driveWait != nil {
			q.driveWait()
		}
		var cs [32]fabric.Completion
		ok := s.pollOnce(q, cs[:], pollBusy)
		q.polling.Unlock()
		select {
		case <-s.Done():
			ok = false
		default:
		}
		if !ok {
			return s.Err()
		}
		return ctx.Err()
	}
	t := time.NewTimer(5 * time.Millisecond)
	defer t.Stop()
	select {
	case <-q.progress:
	case <-t.C:
	case <-s.Done():
		return s.Err()
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// postWrites posts on q the writes of data run r, straight from guest
// RAM into the destination's, in pieces of at most writeChunk (held back
// in q.deferred with commitEarly); write makes the operation that writes
// chunk at byte offset at of region g, whose completion context is
// writeCtx's (Stats count its pages when it completes: writesCompleted).
// pages, if not nil, counts the data pages posted.
func (s *session) postWrites(ctx context.Context, q *queue, r transport.PageRun, pages *uint64,
	write func(g *region, chunk []byte, at uint64) func() error) error {
	return s.ram.spans(r.First, r.Count, func(g *region, off, n uint64) error {
		for b := off * pageSize; b < (off+n)*pageSize; b += writeChunk {
			chunk := g.mem[b:min(b+writeChunk, (off+n)*pageSize)]
			op := write(g, chunk, b)
			if q.commitEarly {
				q.deferred = append(q.deferred, op)
			} else if err := s.postOn(ctx, q, op); err != nil {
				return err
			}
		}
		if pages != nil {
			*pages += n
		}
		return nil
	})
}
