package rdma

import "sync"

// SetCommitEarly makes the sender commit each batch before its writes, a
// broken transport the visibility test must catch.
func (t *Transport) SetCommitEarly() { t.commitEarly = true }

// SetUrgentCommitEarly makes the sender post each urgent COMMIT before
// its writes, a broken transport the urgent visibility test must catch.
func (t *Transport) SetUrgentCommitEarly() { t.ucommitEarly = true }

// UrgentCompletionMode says how the open session commits urgent pages.
func (t *Transport) UrgentCompletionMode() string {
	if t.s.ucaps.DeliveryComplete {
		return "delivery-complete"
	}
	if t.s.ucaps.SAW {
		return "send-after-write"
	}
	return "none"
}

// Corrupt changes the destination's key (or base) the open sender writes
// with, as a buggy or hostile source would.
func (t *Transport) Corrupt(key, base uint64) {
	for _, r := range t.s.ram.regions {
		r.rkey ^= key
		r.rbase += base
		r.urkey ^= key
		r.urbase += base
	}
}

// CompletionMode says how the open session commits batches.
func (t *Transport) CompletionMode() string {
	if t.s.caps.DeliveryComplete {
		return "delivery-complete"
	}
	if t.s.caps.SAW {
		return "send-after-write"
	}
	return "none"
}

// RegisteredOnce reports whether the open sender addresses the
// destination's guest RAM with one registration from both endpoints (the
// same base and key in both sets of the KEYS: the destination registered
// it once, in the domain its endpoints share).
func (t *Transport) RegisteredOnce() bool {
	for _, r := range t.s.ram.regions {
		if r.rkey != r.urkey || r.rbase != r.urbase {
			return false
		}
	}
	return true
}

// HoldUrgentAcks makes the open receiver hold back its urgent ACKs until
// release is called.
func (t *Transport) HoldUrgentAcks() (release func()) {
	ch := make(chan struct{})
	t.s.urcv.hold.Store(&ch)
	return sync.OnceFunc(func() { close(ch) })
}

// Uslots is how many urgent COMMITs may be unacknowledged.
const Uslots = uslots
