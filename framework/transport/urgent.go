package transport

import (
	"context"
	"errors"
	"slices"
	"sync"
)

// Helpers for the destination side of the urgent path, shared by the
// transports: a Lane applies the per-page ordering rule of Transport
// between one bulk stream and the urgent path, a LandedQueue records
// completed writes for Landed.

// Lane orders the writes of the pages one bulk stream (lane) carries
// against urgent copies of the same pages. The source numbers the lane's
// bulk batches 1, 2, 3... in queue order and tags each urgent run with
// the last batch number it had queued on the lane ("after"); the
// destination then drops a page of bulk batch seq if an urgent copy
// tagged after >= seq already landed: that bulk copy was queued before
// the urgent one and must not overwrite it.
//
// The caller holds Lock around the whole of Urgent or Bulk and the
// writes they cover, so that a bulk write and an urgent write of the
// same page never interleave.
type Lane struct {
	sync.Mutex
	done uint64            // last bulk batch applied
	rec  map[uint64]uint64 // page → the after of its latest urgent copy, while > done
	fifo []laneRec         // rec's entries in after order, to prune them
}

type laneRec struct{ page, after uint64 }

// Urgent notes that pages [first, first+count), tagged after, are being
// written on the urgent path (call with the lane locked, before or after
// the write, as long as the lock is held throughout).
func (l *Lane) Urgent(first, count, after uint64) {
	if after <= l.done {
		return // every bulk batch queued before it is applied already
	}
	if l.rec == nil {
		l.rec = map[uint64]uint64{}
	}
	for p := first; p < first+count; p++ {
		l.rec[p] = after
		l.fifo = append(l.fifo, laneRec{p, after})
	}
}

// Bulk applies bulk batch seq covering pages [first, first+count): write
// is called for each sub-run not overtaken by an urgent copy, in order
// (call with the lane locked). Batches must come in seq order.
func (l *Lane) Bulk(seq, first, count uint64, write func(first, count uint64) error) error {
	if len(l.rec) == 0 {
		l.done = seq
		return write(first, count)
	}
	start := first
	for _, p := range l.overtaken(seq, first, count) {
		if p > start {
			if err := write(start, p-start); err != nil {
				return err
			}
		}
		start = p + 1
	}
	if end := first + count; end > start {
		if err := write(start, end-start); err != nil {
			return err
		}
	}
	l.done = seq
	n := 0
	for _, r := range l.fifo {
		if r.after > seq {
			break
		}
		if l.rec[r.page] == r.after {
			delete(l.rec, r.page)
		}
		n++
	}
	l.fifo = l.fifo[n:]
	if len(l.fifo) == 0 {
		l.fifo = nil
	}
	return nil
}

// overtaken returns, in order, the pages of [first, first+count) whose
// copy in bulk batch seq an urgent copy overtook: by walking the batch's
// pages, or the urgent records when there are fewer of them (a strided
// ZERO run of transports/tcp spans up to MaxZeroPages pages; the records
// are a few urgent pages).
func (l *Lane) overtaken(seq, first, count uint64) []uint64 {
	var out []uint64
	if uint64(len(l.rec)) < count {
		for p, a := range l.rec {
			if p >= first && p-first < count && seq <= a {
				out = append(out, p)
			}
		}
		slices.Sort(out)
		return out
	}
	for p := first; p < first+count; p++ {
		if a, ok := l.rec[p]; ok && seq <= a {
			out = append(out, p)
		}
	}
	return out
}

// Overtaken reports whether a bulk copy of page p in batch seq would be
// dropped now (for tests and diagnostics; call with the lane locked).
func (l *Lane) Overtaken(p, seq uint64) bool {
	a, ok := l.rec[p]
	return ok && seq <= a
}

// LandedQueue records the page runs written into guest RAM for Landed,
// from the session's start: a write that lands before the first Landed
// call (or Attach) is reported by it, so no order between arming the
// lane and the peer's first write is needed. Until someone asks it holds
// at most maxUnasked runs; a session that never asks (pre-copy) then
// stops recording, and a late first Wait or Attach gets ErrLandedLost.
// Adjacent runs of one kind merge. A transport that implements Pusher
// hands the runs to the pusher with Attach and Deliver instead.
type LandedQueue struct {
	mu    sync.Mutex
	asked bool // Wait or Attach was called
	runs  []PageRun
	err   error
	note  chan struct{}

	push  func([]PageRun) // the pusher's sink (Attach), nil: Wait takes the runs
	ended func(error)     // the pusher's end, nil once called
}

func (q *LandedQueue) init() {
	if q.note == nil {
		q.note = make(chan struct{}, 1)
	}
}

func (q *LandedQueue) wake() {
	select {
	case q.note <- struct{}{}:
	default:
	}
}

// maxUnasked bounds the runs a LandedQueue holds before anyone asked
// for them (6 MiB at most): a session that never asks (pre-copy only)
// holds no more, and a lane that starts late still learns of a whole
// bulk pass (about 8 runs per MiB of data; the dirty pages after it run
// singly).
const maxUnasked = 1 << 18

// ErrLandedLost is Landed's error when writes landed before the first
// Landed call were more than the transport keeps for it: the lane was
// started too late to learn about them.
var ErrLandedLost = errors.New("landed pages were not recorded: the first Landed call came after more writes than are kept for it")

// Push records a completed write.
func (q *LandedQueue) Push(r PageRun) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.err != nil && (q.push != nil || errors.Is(q.err, ErrLandedLost)) { // a pusher heard the end, or the record is lost: nothing comes after it
		return
	}
	q.init()
	if n := len(q.runs); n > 0 {
		last := &q.runs[n-1]
		if last.Kind == r.Kind && last.First+last.Count == r.First {
			last.Count += r.Count
			return
		}
	}
	if !q.asked && len(q.runs) >= maxUnasked {
		q.runs, q.err = nil, ErrLandedLost
		return
	}
	q.runs = append(q.runs, r)
	q.wake()
}

// End records that the session ended with err: Wait returns what was
// recorded, then err; a pusher gets what was recorded, then err.
func (q *LandedQueue) End(err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.init()
	if q.err == nil {
		q.err = err
	}
	q.wake()
	q.deliver()
	q.end()
}

// Attach gives the queue to a pusher (Pusher.PushLanded): from then on
// Deliver hands the recorded runs (those recorded before it too) to push
// (at most MaxLanded a call, in order, under the queue's lock) and the
// session's end goes to ended, once, after them. Wait must not be called
// any more.
func (q *LandedQueue) Attach(push func([]PageRun), ended func(error)) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.asked, q.push, q.ended = true, push, ended
	q.deliver()
	if q.err != nil {
		q.end()
	}
}

// Deliver hands the runs recorded so far to the pusher, if one attached
// (without one, Wait takes them). The transport calls it right after an
// urgent write, and after bulk writes whenever its input runs dry (and at
// bounded intervals while it does not), so a burst of small writes goes
// out as one report while a lone write is reported at once.
func (q *LandedQueue) Deliver() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.deliver()
}

func (q *LandedQueue) deliver() {
	if q.push == nil {
		return
	}
	for rest := q.runs; len(rest) > 0; {
		n := min(len(rest), MaxLanded)
		q.push(rest[:n:n])
		rest = rest[n:]
	}
	q.runs = q.runs[:0]
}

// end tells the pusher the session ended (q.err), once.
func (q *LandedQueue) end() {
	if q.ended != nil {
		q.ended(q.err)
		q.ended = nil
	}
}

// Wait implements Landed: it blocks until runs were recorded (returns at
// most MaxLanded of them), the session ended, or ctx did.
func (q *LandedQueue) Wait(ctx context.Context) ([]PageRun, error) {
	q.mu.Lock()
	q.asked = true
	q.init()
	note := q.note
	q.mu.Unlock()
	for {
		q.mu.Lock()
		if len(q.runs) > 0 {
			n := min(len(q.runs), MaxLanded)
			out := append([]PageRun(nil), q.runs[:n]...)
			q.runs = append(q.runs[:0], q.runs[n:]...)
			if len(q.runs) > 0 {
				q.wake()
			}
			q.mu.Unlock()
			return out, nil
		}
		err := q.err
		q.mu.Unlock()
		if err != nil {
			return nil, err
		}
		select {
		case <-note:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
