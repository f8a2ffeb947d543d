package engine

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
)

// Every page arrived and the landed lane ended, both before wait looks
// (waitStarts holds it until then). wait decides the same way every
// time (docs/POSTCOPY.md, "Which end wins"):
//
//   - breach: the lane refused a run that claims a write it may not make
//     (here one beyond guest RAM), reported after the last owed page:
//     guest RAM may hold a wrong page, so post-copy breaks and the VM
//     halts;
//   - transport-gone: the lane ended only because the session did: the
//     guest has all its memory, so post-copy completes on the session
//     it has, SETTLED sent, no reconnect.
//
// wait's select picked either at random: the breach completed about
// half the time (ErrPostcopyCheck, the VM running on a RAM the transport
// may have written over), and the session's end sent wait to reconnect
// to a source that never came, ending without SETTLED.
//
// The runs after COMMIT are held until the VM was resumed, so the lane
// refuses nothing before COMMIT was taken (failedEarly: the switch would
// fail, the VM never running here).
func TestPostcopyWaitOrder(t *testing.T) {
	needUffd(t)
	for _, breach := range []bool{true, false} {
		name := "transport-gone"
		if breach {
			name = "breach"
		}
		t.Run(name, func(t *testing.T) {
			hello, pre, postcopy, state, commit, owed := pcFuzzSession()
			items := []pcFuzzItem{hello, pre, postcopy, state, commit, owed}
			if breach {
				items = append(items, pcLand(lyingRuns["beyond"]))
			}
			z := newPCFuzz(t, [][]pcFuzzItem{items})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			resumed := make(chan struct{})
			z.vm.onResume = func() { close(resumed) }
			tr := z.transport()
			landed, batches := tr.LandedFunc, 0
			tr.LandedFunc = func(lctx context.Context) ([]transport.PageRun, error) {
				if batches > 0 { // pre-copy's batch came; the rest is post-copy's
					select {
					case <-resumed:
					case <-lctx.Done():
						return nil, lctx.Err()
					}
				}
				z.mu.Lock()
				gone := !breach && z.pos >= len(z.items)
				z.mu.Unlock()
				if gone {
					return nil, transport.ErrClosed // the session ended, every page reported
				}
				runs, err := landed(lctx)
				if len(runs) > 0 {
					batches++
				}
				return runs, err
			}
			waitStarts = func(pc *pcRecv) {
				for _, ready := range []chan struct{}{pc.arrived, pc.sess.feed.done} {
					select {
					case <-ready:
					case <-ctx.Done():
						t.Error("wait started, but not every page arrived or the landed lane did not end")
						return
					}
				}
			}
			t.Cleanup(func() { waitStarts = nil })
			opt := Options{SwitchoverTimeout: time.Second, StallTimeout: time.Second,
				ReconnectTimeout: 200 * time.Millisecond, Log: testLogger(t)}
			rep, err := Receive(ctx, pcFuzzTarget{fakeVM: z.vm, z: z}, tr, opt)
			z.mu.Lock()
			defer z.mu.Unlock()
			if breach {
				if !errors.Is(err, ErrPostcopyBroken) || !errors.Is(err, errLandedInvalid) ||
					rep.Handover != HandoverPostcopyBroken || !z.halted {
					t.Fatalf("a breach after the last page: %v, handover %s, halted %v", err, rep.Handover, z.halted)
				}
				return
			}
			if err != nil || rep.Handover != HandoverRunning || z.halted || rep.Reconnects != 0 || !sentKind(z.sent, msgSettled) {
				t.Fatalf("the session ended after the last page: %v, handover %s, halted %v, reconnects %d, sent %v",
					err, rep.Handover, z.halted, rep.Reconnects, z.sent)
			}
		})
	}
}
