package rdma

import (
	"testing"

	"github.com/ferryvm/ferry/framework/transport"
)

// TestOrder: the per-page order's bookkeeping without a fabric: a bulk
// run waits for an unacknowledged urgent copy of its pages; an urgent run
// of a page in the current batch is held for it; acknowledged urgent
// copies are forgotten, also when no bulk run comes.
func TestOrder(t *testing.T) {
	var acked uint64
	var o order
	o.init(1<<20, func() uint64 { return acked })
	d := transport.KindData
	it, held := o.queueUrgent([]transport.PageRun{{First: 10, Count: 2, Kind: d}})
	if held || it.gate != 0 {
		t.Fatalf("urgent run with no bulk batch: held %v, gate %d", held, it.gate)
	}
	if w := o.claimBulk(transport.PageRun{First: 0, Count: 64, Kind: d}); w != it {
		t.Fatalf("bulk run over an urgent copy in flight: waits for %v, want %v", w, it)
	}
	o.posted(o.head(), 3, nil)
	acked = 3
	if w := o.claimBulk(transport.PageRun{First: 0, Count: 64, Kind: d}); w != nil {
		t.Fatalf("bulk run after the urgent copy was acknowledged waits for %v", w)
	}
	it2, held := o.queueUrgent([]transport.PageRun{{First: 63, Count: 1, Kind: d}})
	if !held || it2.gate != 1 {
		t.Fatalf("urgent run of a page in batch 1: held %v, gate %d", held, it2.gate)
	}
	_, held = o.queueUrgent([]transport.PageRun{{First: 5000, Count: 1, Kind: d}})
	if !held {
		t.Fatal("an urgent run queued behind a held one is not reported held")
	}
	o.batchDone(2)
	if o.overlapsBatch(0, 1<<20) {
		t.Fatal("pages still marked after the batch's ACK")
	}
	o.posted(o.head(), 4, nil)
	o.posted(o.head(), 5, nil)
	acked = 5
	for i := range uint64(3 * minPrune) {
		o.queueUrgent([]transport.PageRun{{First: 100000 + 2*i, Count: 1, Kind: d}})
		acked++
		o.posted(o.head(), acked, nil)
	}
	if len(o.upages) > minPrune {
		t.Errorf("upages holds %d entries after %d acknowledged urgent copies (prune at %d)", len(o.upages), 3*minPrune, o.pruneAt)
	}
}
