package rdma_test

import (
	"context"
	"net"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/transports/rdma"
)

// slowWrites delays each write by delay (ns; 0: none).
type slowWrites struct {
	net.Conn
	delay *atomic.Int64
}

func (c slowWrites) Write(b []byte) (int, error) {
	time.Sleep(time.Duration(c.delay.Load()))
	return c.Conn.Write(b)
}

// TestStatsRTT: a sending session on the tcp provider reports no round
// trip before its first batch, then the smallest COMMIT or MARK round
// trip of its last batch acknowledged (Stats.RTT, rtt.go): above 0 and
// never longer than that batch's SendPages and Flush, inside which its
// COMMIT went and its ACK came. Once the destination answers late
// (each of its control writes delayed, a link whose round trip grew:
// delay, 4 times the first batch's round trip or more) the round trip
// reported grows with it, at least by delay, from the next batch on,
// not the session's best. A receiving session reports none.
// Before, rdma reported no round trip at all.
func TestStatsRTT(t *testing.T) {
	if !slices.Contains(providers(t), "tcp") {
		t.Skip("SKIPPED: the tcp provider does not work here")
	}
	var delay atomic.Int64
	recv := rdma.New(nil)
	recv.SetControlWrap(func(c net.Conn) net.Conn { return slowWrites{c, &delay} })
	s := openWith(t, "tcp", 0, 4<<20, nil, recv)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rtt := func(tr *rdma.Transport) time.Duration {
		t.Helper()
		st, err := tr.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return st.RTT
	}
	if d := rtt(s.send); d != 0 {
		t.Errorf("the source reports a round trip of %v before any batch", d)
	}
	fillRandom(s.src, 5)
	batch := func(i uint64) (rt, took time.Duration) {
		t.Helper()
		start := time.Now()
		if err := s.send.SendPages(ctx, []transport.PageRun{{First: i * 256, Count: 256, Kind: transport.KindData}}); err != nil {
			t.Fatal(err)
		}
		if err := s.send.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		took = time.Since(start)
		rt = rtt(s.send)
		t.Logf("batch %d: RTT %v, its SendPages and Flush %v", i, rt, took)
		if rt <= 0 || rt > took {
			t.Fatalf("after batch %d the source reports a round trip of %v; want one above 0 and at most %v, the batch's SendPages and Flush", i, rt, took)
		}
		return rt, took
	}
	first, _ := batch(0)
	delay.Store(int64(max(20*time.Millisecond, 4*first)))
	for i := range uint64(2) {
		if rt, _ := batch(1 + i); rt < time.Duration(delay.Load()) {
			t.Errorf("with each answer of the destination's %v late, the source reports a round trip of %v after batch %d; want at least that (the first batch's was %v)",
				time.Duration(delay.Load()), rt, 1+i, first)
		}
	}
	if d := rtt(s.recv); d != 0 {
		t.Errorf("the destination reports a round trip of %v; a receiving session measures none", d)
	}
}
