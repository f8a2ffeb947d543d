package engine

import (
	"context"
	"errors"
	"strings"
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
			tr := holdUntilResumed(z, func() bool { return !breach })
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

// holdUntilResumed returns z's transport with every landed batch after
// the first (pre-copy's) held until the VM was resumed: the lane then
// refuses nothing before COMMIT was acted on. With gone true (asked
// before each call) a call that would find the script's items all
// handed out says the session ended instead of waiting.
func holdUntilResumed(z *pcFuzz, gone func() bool) *transport.Mock {
	resumed := make(chan struct{})
	z.vm.onResume = func() { close(resumed) }
	tr := z.transport()
	landed, batches := tr.LandedFunc, 0
	tr.LandedFunc = func(lctx context.Context) ([]transport.PageRun, error) {
		if batches > 0 {
			select {
			case <-resumed:
			case <-lctx.Done():
				return nil, lctx.Err()
			}
		}
		z.mu.Lock()
		ended := z.pos >= len(z.items) && gone()
		z.mu.Unlock()
		if ended {
			return nil, transport.ErrClosed // the session ended, every page reported
		}
		runs, err := landed(lctx)
		if len(runs) > 0 {
			batches++
		}
		return runs, err
	}
	return tr
}

// The last owed pages and a write over a page the guest owns, in one
// batch, in either order: the fault service refuses the write, the lane
// ends before arrival is noted (feedRuns), and post-copy breaks, the VM
// halted, as for the same write in the next batch (waitEnd: a breach
// wins over arrival). Page 12 is the guest's: its touch returned.
func TestPostcopyLastPagesAndOverwrite(t *testing.T) {
	needUffd(t)
	last := transport.PageRun{First: 40, Count: 2, Kind: transport.KindZero}
	over := transport.PageRun{First: 12, Count: 1, Kind: transport.KindData}
	for name, batch := range map[string][]transport.PageRun{"last-first": {last, over}, "overwrite-first": {over, last}} {
		t.Run(name, func(t *testing.T) {
			hello, pre, postcopy, state, commit, _ := pcFuzzSession()
			owed1 := pcLand(transport.PageRun{First: 10, Count: 4, Kind: transport.KindData})
			z := newPCFuzz(t, [][]pcFuzzItem{{hello, pre, postcopy, state, commit, owed1,
				{op: pcItemTouch, page: 12}, pcLand(batch...)}})
			tr := holdUntilResumed(z, func() bool { return false })
			opt := Options{SwitchoverTimeout: time.Second, StallTimeout: time.Second,
				ReconnectTimeout: 200 * time.Millisecond, Log: testLogger(t)}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			rep, err := Receive(ctx, pcFuzzTarget{fakeVM: z.vm, z: z}, tr, opt)
			z.mu.Lock()
			defer z.mu.Unlock()
			if !z.overwritten {
				t.Fatal("page 12 was not the guest's when the batch landed")
			}
			if !errors.Is(err, ErrPostcopyBroken) || !strings.Contains(err.Error(), "pages 12+1 landed") ||
				rep.Handover != HandoverPostcopyBroken || !z.halted {
				t.Fatalf("Receive: %v, handover %s, halted %v", err, rep.Handover, z.halted)
			}
		})
	}
}
