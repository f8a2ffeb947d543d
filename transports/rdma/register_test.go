package rdma_test

import (
	"maps"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/transports/rdma"
)

// TestRegistrationNotCounted: a side's registration of guest RAM that
// takes longer than its connect_timeout does not count against that
// side's bound (setupClock): the pair opens at the first try. The
// test's hook stands in for verbs pinning a large guest (about a
// second per GiB of fresh memory here, README "Registration and the
// setup's bound"): it makes registering take 1.5 s against a
// connect_timeout of 1 s. The other side has 10 s: it waits for that
// registration and cannot tell it from a slow network. Before, a slow
// source failed its Open at its urgent fabric connect (its bound had
// passed), and a slow destination dropped the try as stalled
// (errSourceStalled) and then met the same with every next try.
func TestRegistrationNotCounted(t *testing.T) {
	prov := providers(t)[0]
	for _, slowSide := range []string{"source", "destination"} {
		t.Run(slowSide, func(t *testing.T) {
			fast := config(t, prov) // connect_timeout 10 s
			slow := maps.Clone(fast)
			slow["connect_timeout"] = int64(time.Second)
			register := func() error { <-time.After(1500 * time.Millisecond); return nil } // registering takes 1.5 s
			dst, src := fast, slow
			if slowSide == "destination" {
				dst, src = slow, fast
			}
			p := newPair(t, prov, dst)
			tr := map[string]*rdma.Transport{"source": p.send, "destination": p.recv}[slowSide]
			tr.SetRegisterHook(register)
			p.startDestination(t, transport.Tag{})
			req := p.sendReq(transport.Tag{})
			req.Config = src
			start := time.Now()
			if err := p.send.Open(p.ctx, req); err != nil {
				p.cancel()
				t.Fatalf("the source's Open: %v (the destination's: %v)", err, p.received())
			}
			if err := p.received(); err != nil {
				t.Fatalf("the destination's Open: %v", err)
			}
			t.Logf("opened in %v", time.Since(start))
			if n, _ := p.log.count(rdma.LogDropped); n != 0 {
				t.Errorf("the destination dropped %d tries: %s", n, p.log)
			}
			if err := p.send.SendMessage(p.ctx, transport.Message{Kind: 7}); err != nil {
				t.Fatal(err)
			}
			if m, err := p.recv.RecvMessage(p.ctx); err != nil || m.Kind != 7 {
				t.Fatalf("message: kind %d, %v", m.Kind, err)
			}
		})
	}
}
