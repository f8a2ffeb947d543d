package tcp

import (
	"testing"

	"github.com/ferryvm/ferry/framework/transport"
)

// TestStatsRTT: a sending session reports the kernel's round trip of its
// first connection (TCP_INFO), which the engine charges in its downtime
// estimate; the receiving side and a closed transport report none.
func TestStatsRTT(t *testing.T) {
	src, dst := newVM(t, testLayout), newVM(t, testLayout)
	send, recv := openPair(t, src, dst, cfg(freeAddr(t), 2, "none"))
	ctx := ctxT(t)
	if err := send.SendPages(ctx, []transport.PageRun{{First: 0, Count: 4, Kind: transport.KindData}}); err != nil {
		t.Fatal(err)
	}
	if err := send.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := send.Stats(ctx)
	if err != nil || st.RTT <= 0 {
		t.Errorf("sending Stats: RTT %v, %v; want the connection's round trip", st.RTT, err)
	}
	if st, _ := recv.Stats(ctx); st.RTT != 0 {
		t.Errorf("receiving Stats: RTT %v, want none", st.RTT)
	}
	send.Close()
	if st, _ := send.Stats(ctx); st.RTT != 0 {
		t.Errorf("Stats after Close: RTT %v, want none", st.RTT)
	}
}
