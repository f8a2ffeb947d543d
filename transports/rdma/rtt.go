package rdma

import (
	"sync/atomic"
	"time"
)

// Stats.RTT: the source's round trip on its own paths.
//
//	source                                     destination
//	t0: post MARK (each SendPages call) ══════► arrives after the writes posted before it
//	t0: post COMMIT seq (Flush) ══════════════► (FI_ORDER_SAW), with the batch's RUNS and ZEROs
//	t1: read MARKED, ACK seq ◄──────────────── answered on the control channel
//	sample = t1 - t0; at ACK seq: Stats.RTT = batch seq's smallest sample
//
// Each sample is one trip there (the fabric) and back (the control
// channel) at least: the answer is written only once the COMMIT or MARK
// arrived, which is not before it was posted. What else is in it: the
// writes still queued ahead of it (it is delivered after them), the
// destination's wait for the batch's RUNS and ZERO frames (COMMIT) and
// its scheduling. So a sample after a large SendPages is mostly the
// writes' transfer, and the smallest of a batch comes near a small
// message's round trip once one of its MARKs or its COMMIT went with
// few writes ahead (a short SendPages call, a small pass). The clock
// starts as the operation is handed to the provider, not when a
// completion says it left: with FI_DELIVERY_COMPLETE that completion
// comes only once it arrived, and counting from there would leave out
// the trip there, a round trip below the real one, which makes the
// engine switch over too early (transport.Stats.RTT). An answer matched
// to another operation than its own can only make a sample longer: a
// MARKED is taken for the earliest MARK not yet answered (the
// destination may answer them out of order); an ACK is timed only when
// it names the last batch committed, from the last COMMIT posted (an
// ACK before its COMMIT, which no honest destination sends, from the
// one before).
//
// Why the last batch's smallest: the engine asks once a pass, after
// its Flush, and wants what the link does now (engine rttMeter); the
// engine Flushes once a pass, so the last batch acknowledged is that
// pass's (its last part, where SendPages committed early). A session's
// smallest would report a link whose round trip grew at its best. A
// MARKED that comes after its batch's ACK (the destination writes each
// answer on its own) is not timed: it would count toward the next
// batch a round trip taken before it.
//
// What it does not measure: the fabric's own round trip (no ping goes
// there and back on it, and adding one is a wire change); a
// destination's (it posts nothing it waits for: 0, as tcp's); the
// urgent path's COMMITs (post-copy only, after the engine's estimate's
// last sample: usendCtrl says why they are left out); a session before
// its first ACK (0). A pass whose Flush
// had nothing to commit leaves the last batch's value.

// roundTrips times the source's COMMITs and MARKs: the posts on the
// engine goroutine, the answers on the control channel's reader.
type roundTrips struct {
	epoch    time.Time              // at the session's start: the times below are since it (monotonic)
	commitAt atomic.Int64           // when the last COMMIT was posted
	markAt   [maxMarks]atomic.Int64 // when the MARK in each buffer was posted
	cur      int64                  // the smallest sample of the batch not yet acknowledged, ns (0: none); the reader's only
	last     *atomic.Int64          // the smallest sample of the last batch acknowledged, ns (0: none): Stats.RTT
}

// start starts the clock of a sending session whose Stats.RTT is last.
func (r *roundTrips) start(last *atomic.Int64) {
	r.epoch, r.last = time.Now(), last
}

// now is the time since the session's start.
func (r *roundTrips) now() int64 { return int64(time.Since(r.epoch)) }

// answered takes a round trip that began at from (now's time; 0: none).
func (r *roundTrips) answered(from int64) {
	if d := r.now() - from; from != 0 && d > 0 && (r.cur == 0 || d < r.cur) {
		r.cur = d
	}
}

// acked takes the round trip of a batch's COMMIT, posted at from, and
// makes the batch's smallest the one Stats reports.
func (r *roundTrips) acked(from int64) {
	r.answered(from)
	if r.cur > 0 {
		r.last.Store(r.cur)
		r.cur = 0
	}
}
