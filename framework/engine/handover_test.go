package engine

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/transport"
)

// lose returns a pipe tweak that drops the first message of kind (in the
// given direction) and, with cut, breaks the connection right then.
func lose(toDst bool, kind uint32, cut bool) func(*pipe) {
	return func(p *pipe) {
		p.filter = func(d bool, m transport.Message) (bool, bool) {
			return d == toDst && m.Kind == kind, cut
		}
	}
}

// handoverCase is one way the handover can go, and what each side must
// do about it.
type handoverCase struct {
	name      string
	setup     func(src, dst *fakeVM) func(*pipe)
	srcStatus Status // and Report.Status of the destination:
	dstStatus Status
	srcRuns   bool // the source resumed (else: paused, never resumed)
	dstRuns   bool // the destination resumed
}

func TestHandover(t *testing.T) {
	for _, tc := range []handoverCase{
		{"completed", func(*fakeVM, *fakeVM) func(*pipe) { return nil },
			StatusCompleted, StatusCompleted, false, true},
		// COMMIT is written but never arrives: nobody may run the VM.
		{"COMMIT lost, connection cut", func(*fakeVM, *fakeVM) func(*pipe) { return lose(true, msgCommit, true) },
			StatusHandoverUnknown, StatusHandoverUnknown, false, false},
		{"COMMIT lost, connection silent", func(*fakeVM, *fakeVM) func(*pipe) { return lose(true, msgCommit, false) },
			StatusHandoverUnknown, StatusHandoverUnknown, false, false},
		// The destination runs the VM, the source cannot know.
		{"RUNNING lost, connection cut", func(*fakeVM, *fakeVM) func(*pipe) { return lose(false, msgRunning, true) },
			StatusHandoverUnknown, StatusCompleted, false, true},
		{"RUNNING lost, connection silent", func(*fakeVM, *fakeVM) func(*pipe) { return lose(false, msgRunning, false) },
			StatusHandoverUnknown, StatusCompleted, false, true},
		// LOADED never reaches the source: it resumes; the destination
		// cannot know that and waits to be resolved.
		{"LOADED lost, connection cut", func(*fakeVM, *fakeVM) func(*pipe) { return lose(false, msgLoaded, true) },
			StatusFailed, StatusHandoverUnknown, true, false},
		{"destination cannot resume", func(_, dst *fakeVM) func(*pipe) {
			dst.failResume = errInjected
			return nil
		}, StatusFailed, StatusFailed, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) { runHandoverCase(t, tc) })
	}
}

func runHandoverCase(t *testing.T, tc handoverCase) {
	src, dst := twoRegions(t)
	for p := uint64(0); p < src.layout.Pages(); p += 5 {
		src.write(p, 0x55)
	}
	opt := Options{SwitchoverTimeout: 300 * time.Millisecond}
	srep, serr, rrep, rerr := migrate(t, src, dst, opt, tc.setup(src, dst))
	if srep.Status != tc.srcStatus || rrep.Status != tc.dstStatus {
		t.Fatalf("status source %q (%v) destination %q (%v), want %q and %q",
			srep.Status, serr, rrep.Status, rerr, tc.srcStatus, tc.dstStatus)
	}
	if (tc.srcStatus == StatusHandoverUnknown) != errors.Is(serr, ErrHandoverUnknown) ||
		(tc.dstStatus == StatusHandoverUnknown) != errors.Is(rerr, ErrHandoverUnknown) {
		t.Errorf("errors %v / %v do not match the statuses", serr, rerr)
	}
	if srcRuns := src.resumed > 0; srcRuns != tc.srcRuns || src.paused == tc.srcRuns {
		t.Errorf("source resumed %d times, paused %v; want running %v", src.resumed, src.paused, tc.srcRuns)
	}
	if dstRuns := dst.resumed > 0; dstRuns != tc.dstRuns {
		t.Errorf("destination resumed %d times; want running %v", dst.resumed, tc.dstRuns)
	}
	if src.resumed > 0 && dst.resumed > 0 {
		t.Error("both sides run the VM")
	}
}

// TestHandoverStatesReported checks the final handover states in the
// reports, as the VMM's migrate-status shows them.
func TestHandoverStatesReported(t *testing.T) {
	src, dst := twoRegions(t)
	srep, _, rrep, _ := migrate(t, src, dst, Options{SwitchoverTimeout: 300 * time.Millisecond}, lose(true, msgCommit, true))
	if srep.Handover != HandoverUnknown || rrep.Handover != HandoverUnknown {
		t.Fatalf("handover source %s destination %s, want handover-unknown on both", srep.Handover, rrep.Handover)
	}
	b, _ := json.Marshal(srep)
	if !strings.Contains(string(b), `"handover":"handover-unknown"`) {
		t.Errorf("report JSON %s", b)
	}
}

// TestSwitchoverDeadline stalls the final pass's Flush (a destination
// that stopped reading at the pause): the source must give up and run
// again when the switch-over deadline passes, not whenever the stream
// recovers.
func TestSwitchoverDeadline(t *testing.T) {
	src, dst := twoRegions(t)
	for p := uint64(0); p < src.layout.Pages(); p++ {
		src.write(p, 0x66)
	}
	const deadline = 300 * time.Millisecond
	var resumedAt time.Time
	start := time.Now()
	srep, serr, _, rerr := migrate(t, src, dst, Options{SwitchoverTimeout: deadline}, func(p *pipe) {
		p.stallFlush = func() bool {
			src.mu.Lock()
			defer src.mu.Unlock()
			return src.paused
		}
	})
	src.mu.Lock()
	resumed, paused := src.resumed, src.paused
	src.mu.Unlock()
	resumedAt = time.Now()
	if serr == nil || !strings.Contains(serr.Error(), "switchover_timeout") || srep.Status != StatusFailed {
		t.Fatalf("send %v (%s), want a switch-over deadline failure", serr, srep.Status)
	}
	if resumed != 1 || paused {
		t.Errorf("source resumed %d times, paused %v", resumed, paused)
	}
	if rerr == nil || dst.resumed != 0 {
		t.Errorf("destination: %v, resumed %d", rerr, dst.resumed)
	}
	if d := resumedAt.Sub(start); d > 5*time.Second {
		t.Errorf("the migration took %v with a %v switch-over deadline", d, deadline)
	}
}

// TestIncomingTimeout: a destination whose source never connects stops
// waiting after IncomingTimeout.
func TestIncomingTimeout(t *testing.T) {
	_, dst := twoRegions(t)
	_, r := newPipe(dst, dst)
	r.p.stallOpen = true
	start := time.Now()
	rep, err := Receive(t.Context(), dst, r, Options{IncomingTimeout: 200 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "incoming_timeout") || rep.Status != StatusFailed {
		t.Fatalf("receive: %v (%s)", err, rep.Status)
	}
	if d := time.Since(start); d > 10*time.Second { // room for a loaded machine; without the timeout it waits for ever
		t.Errorf("waited %v with a 200ms incoming timeout", d)
	}
}

func TestHandoverTable(t *testing.T) {
	for h := HandoverInvalid; h <= HandoverUnknown; h++ {
		if _, ok := handoverNext[h]; !ok {
			t.Errorf("%s has no row in the transition table", h)
		}
		if h.Final() != (len(handoverNext[h]) == 0 && h != HandoverInvalid) {
			t.Errorf("%s: Final %v but %d transitions", h, h.Final(), len(handoverNext[h]))
		}
		var back Handover
		if err := back.UnmarshalText([]byte(h.String())); err != nil || back != h {
			t.Errorf("%s does not round-trip: %v", h, err)
		}
	}
	// The one rule the whole design rests on: nothing leaves "unknown"
	// inside the engine, and nothing but committing and loaded reach it.
	for from, tos := range handoverNext {
		for _, to := range tos {
			if to == HandoverUnknown && from != HandoverCommitting && from != HandoverLoaded {
				t.Errorf("%s → unknown", from)
			}
		}
	}
}

// TestProtocol1Refused: a version-1 source (no RUNNING) is refused in the
// handshake, before any page moves; so is a newer one.
func TestProtocol1Refused(t *testing.T) {
	for _, v := range []uint32{1, protocolVersion + 1} {
		b := encodeHello(framework.Layout{{GPA: 0, Size: 4096}}, 0, migrationTag{})
		binary.LittleEndian.PutUint32(b, v)
		if _, err := decodeHello(b); err == nil || !strings.Contains(err.Error(), "engine protocol") {
			t.Errorf("version %d: %v", v, err)
		}
	}
}

// TestReceiveCancelledAfterLoaded: a destination cancelled between
// LOADED and COMMIT (its VMM stopping, migrate-cancel) never runs the VM
// and tells the source, which resumes it: exactly one side runs, and
// neither is left handover-unknown. Before, the destination took the
// cancel for a cut stream: both sides ended handover-unknown, the guest
// running nowhere until someone resolved it.
func TestReceiveCancelledAfterLoaded(t *testing.T) {
	src, dst := everySeventh(t, 0x42)
	rctx, cancelAtLoaded := cancelReceiverAtLoaded(t)
	srep, serr, rrep, rerr := migrateCtx(t, src, dst, rctx, Options{SwitchoverTimeout: 2 * time.Second}, cancelAtLoaded)
	if rrep.Status != StatusCancelled || rrep.Handover != HandoverFailed || srep.Status != StatusFailed {
		t.Fatalf("source %s (%v), destination %s, %s (%v); want the source failed, the destination cancelled",
			srep.Status, serr, rrep.Status, rrep.Handover, rerr)
	}
	if dst.resumed != 0 || src.resumed != 1 || src.paused {
		t.Errorf("destination resumed %d times, source %d (paused %v); want the source running",
			dst.resumed, src.resumed, src.paused)
	}
	if !errors.Is(serr, errDestinationAborted) {
		t.Errorf("source: %v, want the destination's ABORT", serr)
	}
}

// cancelReceiverAtLoaded returns a receiver's context and a pipe tweak
// that cancels it as LOADED passes, and holds LOADED from the source
// until the receiver has seen the cancel and answered ABORT (it needs no
// COMMIT for that): the source then reads LOADED, sends COMMIT, and finds
// the ABORT behind it. A receiver that sends no ABORT fails t (after
// 10 s, past the tests' 2 s switchover_timeout).
func cancelReceiverAtLoaded(t *testing.T) (context.Context, func(*pipe)) {
	rctx, rcancel := context.WithCancel(context.Background())
	return rctx, func(p *pipe) {
		aborted := make(chan struct{}) // closed as the destination's ABORT goes out
		var once sync.Once
		p.filter = func(toDst bool, m transport.Message) (bool, bool) {
			switch {
			case !toDst && m.Kind == msgLoaded:
				rcancel()
			case !toDst && m.Kind == msgAbort:
				once.Do(func() { close(aborted) })
			}
			return false, false
		}
		p.delivered = func(toDst bool, m transport.Message) {
			if !toDst && m.Kind == msgLoaded {
				select {
				case <-aborted:
				case <-time.After(10 * time.Second):
					t.Error("the destination sent no ABORT within 10 s of its cancel at LOADED")
				}
			}
		}
	}
}

// TestCommitSendFailsAfterAbort: the destination, cancelled after
// LOADED, answers ABORT and closes its end; the source, which had read
// LOADED, finds its COMMIT write failing on the closed connection. The
// ABORT that arrived before says the destination will never run the VM:
// the source resumes it instead of calling the handover unknown (seen
// under emulated KVM: a destination VMM's SIGTERM between LOADED and
// COMMIT left the source handover-unknown beside a destination that had
// exited, so migrate could not resolve it).
func TestCommitSendFailsAfterAbort(t *testing.T) {
	src, dst := twoRegions(t)
	rctx, cancelAtLoaded := cancelReceiverAtLoaded(t)
	srep, serr, _, rerr := migrateCtx(t, src, dst, rctx, Options{SwitchoverTimeout: 2 * time.Second}, func(p *pipe) {
		cancelAtLoaded(p) // the ABORT is out before the source reads LOADED
		p.sendErr = func(toDst bool, m transport.Message) error {
			if toDst && m.Kind == msgCommit {
				return fmt.Errorf("stream 0: %w", transport.ErrClosed)
			}
			return nil
		}
	})
	if srep.Status != StatusFailed || src.resumed != 1 || src.paused || !errors.Is(serr, errDestinationAborted) {
		t.Fatalf("source %s (%v), resumed %d, paused %v; want failed and running again on the destination's ABORT",
			srep.Status, serr, src.resumed, src.paused)
	}
	if dst.resumed != 0 || rerr == nil {
		t.Errorf("destination resumed %d (%v)", dst.resumed, rerr)
	}
}

// TestReceiveCancelledAtCommit: a cancel that returned before the
// receiver acts on a COMMIT refuses it (ABORT, never resumed), as a VM
// that will not resume does, even when the goroutine that ends the
// receiver's context has not run yet (a caller that stops the VM after
// its cancel must not stop a guest the COMMIT ran); one that comes after
// Resume leaves the VM running and RUNNING still goes out (the source
// must not be left handover-unknown by a cancel that lost the race).
func TestReceiveCancelledAtCommit(t *testing.T) {
	dst := newFakeVM(t, [2]uint64{0, 64 << 10})
	end := &sinkEnd{pipeEnd: &pipeEnd{p: &pipe{}}}
	opt := Options{}
	opt.defaults()
	r := newReceiver(dst, end, opt)
	ctx, cancel := context.WithCancel(context.Background())
	r.held = holdable(ctx, func(error) {})
	r.ho.h = HandoverLoaded
	cancel() // and at once: no wait for heldCtx's own goroutine
	_, err := r.handle(r.held, transportMessage(msgCommit, nil))
	if err == nil {
		t.Fatal("COMMIT after a cancel was taken")
	}
	r.giveUp(err)
	if dst.resumed != 0 || r.ho.get() != HandoverFailed || len(end.sent) != 1 || end.sent[0] != msgAbort {
		t.Fatalf("resumed %d, handover %s, sent %v; want not resumed, failed, ABORT", dst.resumed, r.ho.get(), end.sent)
	}

	// The cancel comes just after Resume: the guest runs here, and
	// RUNNING must still reach the source.
	dst = newFakeVM(t, [2]uint64{0, 64 << 10})
	cend := &ctxSinkEnd{sinkEnd: sinkEnd{pipeEnd: &pipeEnd{p: &pipe{}}}}
	r = newReceiver(dst, cend, opt)
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	r.held = holdable(ctx, func(error) {})
	r.ho.h = HandoverLoaded
	dst.onResume = cancel
	if done, err := r.handle(r.held, transportMessage(msgCommit, nil)); !done || err != nil {
		t.Fatalf("COMMIT before the cancel: done %v, %v", done, err)
	}
	if dst.resumed != 1 || r.ho.get() != HandoverRunning || len(cend.sent) != 1 || cend.sent[0] != msgRunning {
		t.Fatalf("resumed %d, handover %s, sent %v; want running and RUNNING sent", dst.resumed, r.ho.get(), cend.sent)
	}
}

// ctxSinkEnd records the messages sent, each after 20 ms on the wire,
// and fails a send whose context ends meanwhile, as a real transport
// does.
type ctxSinkEnd struct{ sinkEnd }

func (s *ctxSinkEnd) SendMessage(ctx context.Context, m transport.Message) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(20 * time.Millisecond):
	}
	return s.sinkEnd.SendMessage(ctx, m)
}

// TestLoadedNotSentAfterSetupFailed: post-copy's goroutines failing
// while the state loads (they end the loop's context with
// errPostcopySetup) stop the receiver before LOADED, and the report
// says failed with that cause, not cancelled: nobody cancelled.
func TestLoadedNotSentAfterSetupFailed(t *testing.T) {
	dst := newFakeVM(t, [2]uint64{0, 64 << 10})
	end := &sinkEnd{pipeEnd: &pipeEnd{p: &pipe{}}}
	opt := Options{}
	opt.defaults()
	r := newReceiver(dst, end, opt)
	r.ho.h = HandoverReceiving
	ctx, stop := context.WithCancelCause(context.Background())
	stop(fmt.Errorf("%w: fault loop: gone", errPostcopySetup))
	state := []byte("fake-state-v1")
	err := r.stateChunk(ctx, encodeStateChunk(uint64(len(state)), 0, state))
	if err == nil || len(end.sent) != 0 || r.ho.get() != HandoverReceiving {
		t.Fatalf("err %v, sent %v, handover %s; want an error before LOADED", err, end.sent, r.ho.get())
	}
	if !errors.Is(err, errPostcopySetup) || status(err) != StatusFailed {
		t.Errorf("err %v (status %s), want post-copy's setup failure, failed", err, status(err))
	}
}
