package rdma

import (
	"slices"
	"sync"

	"github.com/ferryvm/ferry/framework/transport"
)

// order is the source's record of which pages have a copy in flight on
// each path, under one lock, so that every page's copies land in the
// order they were queued (urgent.go explains why the source keeps it).
type order struct {
	mu    sync.Mutex
	batch []uint64            // bitmap: pages queued in the current bulk batch, not yet acknowledged
	runs  []transport.PageRun // the runs that set batch, to clear it at the ACK
	seq   uint64              // the current bulk batch's number
	// Urgent copies: the latest queued item per page, until it is known
	// acknowledged; the items not yet posted, in queue order; and how
	// many of those wait for a bulk batch.
	upages  map[uint64]*uitem
	pruneAt int // prune upages when it grows to this size
	queue   []*uitem
	held    int
	acked   func() uint64 // the last urgent COMMIT the destination acknowledged
}

// uitem is one SendPagesUrgent call's runs.
type uitem struct {
	runs   []transport.PageRun
	gate   uint64        // the bulk batch whose ACK it waits for; 0: none
	commit uint64        // its last urgent COMMIT once posted (order.mu)
	posted chan struct{} // closed once posted or failed
	err    error
}

func (o *order) init(pages uint64, acked func() uint64) {
	o.batch = make([]uint64, (pages+63)/64)
	o.seq = 1
	o.upages = map[uint64]*uitem{}
	o.pruneAt = minPrune
	o.acked = acked
}

// minPrune is the size upages may reach before acknowledged entries are
// dropped outside claimBulk (when no bulk runs are queued).
const minPrune = 4096

// prune drops the upages entries whose copy is in guest RAM (o.mu held).
func (o *order) prune() {
	for p, it := range o.upages {
		if o.done(it) {
			delete(o.upages, p)
		}
	}
	o.pruneAt = max(minPrune, 2*len(o.upages))
}

// done reports whether it is in guest RAM (o.mu held).
func (o *order) done(it *uitem) bool { return it.commit != 0 && o.acked() >= it.commit }

// overlapsBatch reports whether a page of [first, first+count) is in
// the current bulk batch (o.mu held).
func (o *order) overlapsBatch(first, count uint64) bool {
	for p, end := first, first+count; p < end; {
		w := o.batch[p/64]
		if p%64 == 0 && end-p >= 64 {
			if w != 0 {
				return true
			}
			p += 64
			continue
		}
		if w&(1<<(p%64)) != 0 {
			return true
		}
		p++
	}
	return false
}

func (o *order) mark(first, count uint64) {
	for p, end := first, first+count; p < end; {
		if p%64 == 0 && end-p >= 64 {
			o.batch[p/64] = ^uint64(0)
			p += 64
			continue
		}
		o.batch[p/64] |= 1 << (p % 64)
		p++
	}
}

func (o *order) unmark(first, count uint64) {
	for p, end := first, first+count; p < end; {
		if p%64 == 0 && end-p >= 64 {
			o.batch[p/64] = 0
			p += 64
			continue
		}
		o.batch[p/64] &^= 1 << (p % 64)
		p++
	}
}

// claimBulk queues run r on the bulk path: it marks r's pages as in the
// current batch, unless an urgent copy of one of them queued before is
// not yet acknowledged; then it returns that copy (the caller waits for
// it and tries again).
func (o *order) claimBulk(r transport.PageRun) *uitem {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.upages) > 0 {
		o.prune()
		for p, it := range o.upages {
			if p >= r.First && p-r.First < r.Count {
				return it
			}
		}
	}
	o.mark(r.First, r.Count)
	o.runs = append(o.runs, r)
	return nil
}

// claimBehind queues run r on the bulk path whatever urgent copies of
// its pages are queued: it marks r's pages as in the current batch and
// returns the urgent copies of them not yet acknowledged (each
// SendPagesUrgent call's item once). The caller waits for those before
// it posts r's writes, so they land before r; a copy queued from now on
// overlaps the batch and is held until its ACK (queueUrgent), so it
// lands after r. The batch must hold nothing such a copy may be held
// for: the caller commits it first (session.claim).
func (o *order) claimBehind(r transport.PageRun) []*uitem {
	o.mu.Lock()
	defer o.mu.Unlock()
	var before []*uitem
	if len(o.upages) > 0 {
		o.prune()
		for p, it := range o.upages {
			if p >= r.First && p-r.First < r.Count && !slices.Contains(before, it) {
				before = append(before, it)
			}
		}
	}
	o.mark(r.First, r.Count)
	o.runs = append(o.runs, r)
	return before
}

// marked reports whether the current bulk batch has runs claimed.
func (o *order) marked() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.runs) > 0
}

// batchDone records that bulk batch seq was acknowledged: its pages are in
// guest RAM; next is the batch built from now on.
func (o *order) batchDone(next uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, r := range o.runs {
		o.unmark(r.First, r.Count)
	}
	o.runs = o.runs[:0]
	o.seq = next
}

// queueUrgent queues runs on the urgent path; held says the item (or
// one before it) waits for a bulk batch.
func (o *order) queueUrgent(runs []transport.PageRun) (*uitem, bool) {
	it := &uitem{runs: runs, posted: make(chan struct{})}
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, r := range runs {
		if o.overlapsBatch(r.First, r.Count) {
			it.gate = o.seq
			o.held++
			break
		}
	}
	for _, r := range runs {
		for p := r.First; p < r.First+r.Count; p++ {
			o.upages[p] = it
		}
	}
	if len(o.upages) >= o.pruneAt {
		o.prune()
	}
	o.queue = append(o.queue, it)
	return it, o.held > 0
}

// head returns the oldest urgent item not yet posted.
func (o *order) head() *uitem {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.queue) == 0 {
		return nil
	}
	return o.queue[0]
}

// posted takes the head item off the queue once posted (commit: its last
// urgent COMMIT) or failed.
func (o *order) posted(it *uitem, commit uint64, err error) {
	o.mu.Lock()
	o.queue[0] = nil
	o.queue = o.queue[1:]
	if it.gate != 0 {
		o.held--
	}
	it.commit, it.err = commit, err
	o.mu.Unlock()
	close(it.posted)
}
