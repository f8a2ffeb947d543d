package transporttest

import (
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
)

// countWait bounds how long CountsBeforeFlush waits for the receiver
// to count one call's pages: far under the engine's StallTimeout (30 s
// by default), far over a loopback write of 1.2 MiB.
const countWait = 10 * time.Second

// testCountsBeforeFlush: a receiving transport counts bytes as pages
// arrive, not at the Flush that ends their batch (transport.Transport's
// Stats). The engine's stall watch on the destination sees a pre-copy
// pass only through the receiver's BytesWire until the pass's Flush, so
// a sender that writes slower than the batch fills, as one behind a slow
// link does, would look stalled. Here the sender queues one call's pages
// and then does nothing until the receiver's count has grown by at least
// their bytes (random, so no compression shrinks them), call after call,
// and only then flushes: big runs, a run across the regions, and single
// pages that a transport may name only in a batch's bookkeeping.
func testCountsBeforeFlush(t *testing.T, p *pair) {
	p.open()
	d := transport.KindData
	calls := [][]transport.PageRun{
		{{First: 0, Count: 256, Kind: d}},
		{{First: 1900, Count: 300, Kind: d}}, // crosses into region 1 at 2048
		nil,
	}
	for q := uint64(400); q < 1800; q += 7 {
		calls[2] = append(calls[2], transport.PageRun{First: q, Count: 1, Kind: d})
	}
	var all []transport.PageRun
	for _, c := range calls {
		all = append(all, c...)
	}
	want := p.prepare(6, all)
	start := p.receiverStats()
	var sent uint64
	for i, runs := range calls {
		if err := p.send.SendPages(ctx(t), runs); err != nil {
			t.Fatalf("SendPages (call %d): %v", i, err)
		}
		for _, r := range runs {
			sent += r.Count
		}
		at := time.Now()
		st := p.waitCounted(start.BytesWire + sent*pageSize)
		if got := st.BytesWire - start.BytesWire; got < sent*pageSize {
			t.Fatalf("call %d: the receiver counted %d bytes in %v after %d data pages were sent and no Flush (%+v); "+
				"want at least %d: a receiving transport counts bytes as pages arrive, not at the Flush",
				i, got, countWait, sent, st, sent*pageSize)
		}
		t.Logf("call %d: counted %d bytes %v after SendPages returned", i, st.BytesWire-start.BytesWire, time.Since(at).Round(time.Millisecond))
	}
	if err := p.send.Flush(ctx(t)); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	p.ram.expect(t, want)
	if st := p.receiverStats(); st.PagesData-start.PagesData != sent {
		t.Errorf("after Flush the receiver counted %d data pages (%+v); want %d, each once", st.PagesData-start.PagesData, st, sent)
	}
}

// receiverStats is the receiver's Stats.
func (p *pair) receiverStats() transport.Stats {
	p.t.Helper()
	st, err := p.recv.Stats(ctx(p.t))
	if err != nil {
		p.t.Fatalf("receiver Stats: %v", err)
	}
	return st
}

// waitCounted polls the receiver's Stats until its BytesWire reaches
// bytes or countWait passes, and returns the last Stats.
func (p *pair) waitCounted(bytes uint64) transport.Stats {
	p.t.Helper()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	end := time.After(countWait)
	for {
		st := p.receiverStats()
		if st.BytesWire >= bytes {
			return st
		}
		select {
		case <-tick.C:
		case <-end:
			return st
		}
	}
}
