package engine

import "time"

// rttMeter is the message round trip on this link that estimateDowntime
// charges twice (the final pass's Flush and the state's LOADED): the
// smallest of every sample taken during the migration (docs/JOBS.md,
// max_downtime). Each sample is a round trip plus whatever else delayed
// it, never less than one:
//   - HELLO to READY (handshake): also what the destination did before
//     it answered (its start, post-copy's preparation: newPCRecv) and
//     any CPU contention on either side;
//   - each live pass's Flush, from the start of the pass's last
//     SendPages to the Flush's return (sendPass): the destination
//     cannot confirm pages before they were queued, so this includes
//     their ack's round trip, and also what the transport still had
//     queued, a bandwidth cap's sleep, a probe's sync;
//   - the transport's own measure, where it has one (transport.Stats.RTT:
//     tcp reports the kernel's smoothed round trip), taken once a pass.
//
// So one slow sample (a HELLO answered late once) no longer stands for
// the whole migration, while a link whose every round trip is slow
// still estimates as slow. What it cannot do: a link that becomes
// slower during the migration is charged its best round trip so far,
// and a pass that queued no page (an idle guest's) adds no Flush sample
// (an empty Flush need not go to the destination: tcp and rdma return
// at once).
type rttMeter struct {
	best time.Duration // the smallest sample; 0: none yet
}

// sample takes one measured round trip; 0 (not measured) is ignored.
func (m *rttMeter) sample(d time.Duration) {
	if d > 0 && (m.best == 0 || d < m.best) {
		m.best = d
	}
}

// get is the round trip to charge: the smallest sample, 0 before any.
func (m *rttMeter) get() time.Duration { return m.best }
