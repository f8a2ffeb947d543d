package engine

import "time"

// rttMeter is the message round trip on this link that estimateDowntime
// charges twice (the final pass's Flush and the state's LOADED): the
// smallest sample of the current window, a live pass (next begins one),
// so what the link does now (docs/JOBS.md, max_downtime). Each sample
// is a round trip plus whatever else delayed it, never less than one:
//   - HELLO to READY (handshake, before the first pass): also what the
//     destination did before it answered (its start, post-copy's
//     preparation: newPCRecv) and any CPU contention on either side;
//   - each live pass's Flush, from the start of the pass's last
//     SendPages to the Flush's return (sendPass): the destination
//     cannot confirm pages before they were queued, so this includes
//     their ack's round trip, and also what the transport still had
//     queued and a probe's sync (a bandwidth cap's sleep comes before a
//     batch, not between the last one and the Flush: TestCappedPassConverges);
//   - the transport's own measure, where it has one (transport.Stats.RTT:
//     tcp reports the kernel's smoothed round trip, rdma its last
//     batch's quickest COMMIT or MARK answer), taken once a pass, after
//     its Flush.
//
// Why the smallest of the latest pass, not of the whole migration nor
// the largest of a few Flushes, nor a smoothed round trip plus its
// variance (TCP's SRTT+4·RTTVAR): the smallest of every sample charged
// a link whose round trip grew (congested by the migration's own bulk
// traffic, a destination loaded since) the handshake's, and the sender
// switched over on an estimate far below what the switch then took
// (TestGrownRTTEstimated). The samples of one pass are taken at its
// end, so they are current, and each is a round trip plus other delays,
// so the smallest is the closest; the largest would charge a pass's
// Flush with the drain of its last batch (measured on loopback: a bulk
// pass's Flush took 9-16 ms where the transport measured 0.4 ms), which
// the pages' own time in the estimate already counts, and a variance
// term is a retransmit timer's margin, not the pause's length. A slow
// handshake (a destination slow to answer HELLO once) no longer counts
// once the first pass took a sample (TestLateReadyConverges), while a
// link whose every round trip is slow still estimates as slow
// (TestSlowLinkEstimated).
//
// What it cannot do: a round trip that grows after the pass's last
// sample, or during the switch itself, is not in the estimate; a round
// trip that varies from one message to the next is charged its best of
// the pass (tcp's own measure, smoothed by the kernel, is that pass's
// mean); a pass with no sample (an idle guest's pass, no page queued,
// over a transport that measures none: an empty Flush need not go to the
// destination, tcp and rdma return at once) keeps the last pass's; and
// over such a transport a pass that queued many pages charges its
// Flush's drain of what the transport still held when the last batch
// was queued (its last batch; a transport that queues many batches, all
// of them), which errs toward a later switch, until max_passes for
// an idle guest, whose passes after it take no sample: a bulk pass that
// left much queued (a slow link behind a deep queue) charges that
// queue's drain for the rest of the migration.
type rttMeter struct {
	cur  time.Duration // the smallest sample of the current window; 0: none yet
	last time.Duration // the smallest of the last window that had one; 0: none
}

// next begins a new window (a live pass): the samples from here on
// replace the previous window's once one is taken.
func (m *rttMeter) next() {
	if m.cur > 0 {
		m.last, m.cur = m.cur, 0
	}
}

// sample takes one measured round trip; 0 (not measured) is ignored.
func (m *rttMeter) sample(d time.Duration) {
	if d > 0 && (m.cur == 0 || d < m.cur) {
		m.cur = d
	}
}

// get is the round trip to charge: the smallest sample of the current
// window, else of the last window that had one, 0 before any.
func (m *rttMeter) get() time.Duration {
	if m.cur > 0 {
		return m.cur
	}
	return m.last
}
