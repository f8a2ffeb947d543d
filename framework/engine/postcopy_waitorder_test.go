package engine

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
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
// ends before arrival is noted (landedFeed.taken), and post-copy breaks, the VM
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

// The last owed pages and, later in the same batch, a run the lane
// refuses, with a run the lane drops between them or none: the lane
// hands the batch on in parts around what it drops, and noted arrival
// after each part, so wait could take arrival before the refusal,
// complete post-copy and report ErrPostcopyCheck with the VM running on
// a page the transport wrote over. The lane notes arrival only after a
// whole batch was taken; post-copy breaks, the VM halted, as for the
// same runs without the dropped one (TestPostcopyLastPagesAndOverwrite).
//
//   - dropped-between: an empty run between the last pages and a write
//     over page 12, the guest's. The drop's warning, logged by the lane
//     between the two parts, holds the lane until SETTLED went out when
//     arrival was noted by then: wait took it before the refusal (it
//     completed that way every run before the fix).
//   - no-kind-over-owned: the last pages, then a run of no kind over
//     page 12 (refused: not awaited). Nothing holds the lane here:
//     before the fix wait could take arrival in the few instructions
//     between the parts (0 of 200 runs did); after it, it cannot.
func TestPostcopyLastPagesSplitBatch(t *testing.T) {
	needUffd(t)
	last := transport.PageRun{First: 40, Count: 2, Kind: transport.KindZero}
	for name, batch := range map[string][]transport.PageRun{
		"dropped-between":    {last, claimlessRuns["empty-inside"], {First: 12, Count: 1, Kind: transport.KindData}},
		"no-kind-over-owned": {last, {First: 12, Count: 1}},
	} {
		t.Run(name, func(t *testing.T) {
			hello, pre, postcopy, state, commit, _ := pcFuzzSession()
			owed1 := pcLand(transport.PageRun{First: 10, Count: 4, Kind: transport.KindData})
			z := newPCFuzz(t, [][]pcFuzzItem{{hello, pre, postcopy, state, commit, owed1,
				{op: pcItemTouch, page: 12}, pcLand(batch...)}})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			// The batches after pre-copy's wait until wait started
			// (after COMMIT was taken), which gives the test its pcRecv.
			var pc atomic.Pointer[pcRecv]
			started, settled := make(chan struct{}), make(chan struct{})
			waitStarts = func(p *pcRecv) { pc.Store(p); close(started) }
			t.Cleanup(func() { waitStarts = nil })
			tr := z.transport()
			landed, send, batches := tr.LandedFunc, tr.SendMessageFunc, 0
			tr.LandedFunc = func(lctx context.Context) ([]transport.PageRun, error) {
				if batches > 0 {
					select {
					case <-started:
					case <-lctx.Done():
						return nil, lctx.Err()
					}
				}
				runs, err := landed(lctx)
				if len(runs) > 0 {
					batches++
				}
				return runs, err
			}
			var once sync.Once
			tr.SendMessageFunc = func(sctx context.Context, m transport.Message) error {
				err := send(sctx, m)
				if m.Kind == msgSettled {
					once.Do(func() { close(settled) })
				}
				return err
			}
			log := slog.New(onRecord{Handler: testLogger(t).Handler(), on: func(r slog.Record) {
				if p := pc.Load(); strings.Contains(r.Message, "dropped") && p != nil && closed(p.arrived) {
					select { // wait may take arrival: let it
					case <-settled:
					case <-ctx.Done():
					}
				}
			}})
			opt := Options{SwitchoverTimeout: time.Second, StallTimeout: time.Second,
				ReconnectTimeout: 200 * time.Millisecond, Log: log}
			rep, err := Receive(ctx, pcFuzzTarget{fakeVM: z.vm, z: z}, tr, opt)
			z.mu.Lock()
			defer z.mu.Unlock()
			if !z.overwritten {
				t.Fatal("page 12 was not the guest's when the batch landed")
			}
			if !errors.Is(err, ErrPostcopyBroken) || errors.Is(err, ErrPostcopyCheck) ||
				rep.Handover != HandoverPostcopyBroken || !z.halted || sentKind(z.sent, msgSettled) {
				t.Fatalf("Receive: %v, handover %s, halted %v, sent %v", err, rep.Handover, z.halted, z.sent)
			}
		})
	}
}

// onRecord is a slog handler that tells on of each record it handles
// before Handler writes it.
type onRecord struct {
	slog.Handler
	on func(slog.Record)
}

func (h onRecord) Handle(ctx context.Context, r slog.Record) error {
	h.on(r)
	return h.Handler.Handle(ctx, r)
}
