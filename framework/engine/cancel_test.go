package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/vmtest"
)

// errOperator is the cause the tests cancel with.
var errOperator = errors.New("the operator cancelled")

// cancelRun is one migration over the fake pipe whose source or
// destination (onDst) runs under a Cancel, and when its Cancel was
// called with what answer.
type cancelRun struct {
	cancelled
	called         bool
	took, postcopy bool
}

// cancelSetup is what a test's arm may hook a cancel into: the source's
// pipe end, both VMs and the source's Options. cancel calls the Cancel
// (once) and records its answer; cancelAsync does so on a goroutine of
// its own (that runCancel waits for), returning at once or (started)
// once the goroutine runs.
type cancelSetup struct {
	s           *pipeEnd
	src, dst    *fakeVM
	sopt        *Options
	cancel      func()
	cancelAsync func(started bool)
}

// runCancel migrates src to dst over the fake pipe, Send under a Cancel
// (Receive if onDst), after arm set its hooks.
func runCancel(t *testing.T, onDst bool, arm func(*cancelSetup)) cancelRun {
	t.Helper()
	src, dst := everySeventh(t, 0x3c)
	s, r := newPipe(src, dst)
	ctx, stop := context.WithTimeout(context.Background(), 30*time.Second)
	defer stop()
	cctx, c := NewCancel(ctx)
	var run cancelRun
	var once sync.Once
	var mu sync.Mutex
	sopt := Options{Log: testLogger(t)}
	var async sync.WaitGroup
	defer async.Wait()
	a := &cancelSetup{s: s, src: src, dst: dst, sopt: &sopt, cancel: func() {
		once.Do(func() {
			took, postcopy := c.Cancel(errOperator)
			mu.Lock()
			run.called, run.took, run.postcopy = true, took, postcopy
			mu.Unlock()
		})
	}}
	a.cancelAsync = func(started bool) {
		running := make(chan struct{})
		async.Go(func() { close(running); a.cancel() })
		if started {
			<-running
		}
	}
	arm(a)
	sctx, dctx := cctx, ctx
	if onDst {
		sctx, dctx = ctx, cctx
	}
	var wg sync.WaitGroup
	wg.Go(func() { run.drep, run.derr = Receive(dctx, dst, r, Options{Log: testLogger(t)}) })
	run.srep, run.serr = Send(sctx, src, s, sopt)
	wg.Wait()
	async.Wait()
	mu.Lock()
	defer mu.Unlock()
	run.src, run.dst = src, dst
	if !run.called {
		t.Fatal("the test's cancel point was never reached")
	}
	return run
}

// check says whether the run ended the way its Cancel's answer said:
// took, and the guest runs on the source (resumed; the cancelled side
// reports cancelled, also when the transport broke on the cancel first),
// or refused, and the migration went on to completed, the guest running
// on the destination, never resumed on the source.
func (c cancelRun) check(t *testing.T, onDst bool) {
	t.Helper()
	if c.postcopy {
		t.Errorf("a pre-copy migration's Cancel answered post-copy")
	}
	rep, err := c.srep, c.serr
	if onDst {
		rep, err = c.drep, c.derr
	}
	switch {
	case c.took && (rep.Status != StatusCancelled || !errors.Is(err, context.Canceled)):
		t.Errorf("Cancel took, but the cancelled side ended %s: %v", rep.Status, err)
	case c.took && (c.src.resumed != 1 || c.dst.resumed != 0):
		t.Errorf("Cancel took, but the source resumed %d times, the destination %d: the guest must run on the source only",
			c.src.resumed, c.dst.resumed)
	case !c.took && (c.serr != nil || c.derr != nil || c.srep.Status != StatusCompleted || c.drep.Status != StatusCompleted):
		t.Errorf("Cancel was refused, but the migration did not complete: source %s (%v), destination %s (%v)",
			c.srep.Status, c.serr, c.drep.Status, c.derr)
	case !c.took && (c.src.resumed != 0 || c.dst.resumed != 1):
		t.Errorf("Cancel was refused, but the source resumed %d times, the destination %d: the guest must run on the destination only",
			c.src.resumed, c.dst.resumed)
	}
}

// TestCancelAnswersAtTheHold: a Cancel's answer is what happens. In the
// source's report right after its hold (HandoverCommitting: a VMM could
// not have seen it yet) the cancel is refused and the migration
// completes; in its switch-over report, and as LOADED reaches it, it
// takes and the source runs on. On the destination, inside the Resume
// that COMMIT caused, it is refused; as COMMIT arrives, before it is
// acted on, it takes (ABORT: the source resumes). Before, only a context
// cancel existed: the reference VMM answered "cancelled" at the source's
// hold, and the migration completed on the destination.
func TestCancelAnswersAtTheHold(t *testing.T) {
	for _, tc := range []struct {
		name  string
		onDst bool
		took  bool
		arm   func(*cancelSetup)
	}{
		{"source, switch-over reported", false, true, cancelOnReport(HandoverSwitchover)},
		{"source, LOADED arrives", false, true, cancelOnMessage(false, msgLoaded)},
		{"source, committing reported", false, false, cancelOnReport(HandoverCommitting)},
		{"destination, COMMIT arrives", true, true, cancelOnMessage(true, msgCommit)},
		{"destination, resuming on COMMIT", true, false, func(a *cancelSetup) { a.dst.onResume = a.cancel }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := runCancel(t, tc.onDst, tc.arm)
			if c.took != tc.took {
				t.Errorf("Cancel took %v, want %v", c.took, tc.took)
			}
			c.check(t, tc.onDst)
		})
	}
}

// cancelOnReport cancels in the source's first progress report that
// says handover h, on the engine's goroutine, before the report could
// go further.
func cancelOnReport(h Handover) func(*cancelSetup) {
	return func(a *cancelSetup) {
		a.sopt.Progress = func(p Progress) {
			if p.Handover == h {
				a.cancel()
			}
		}
	}
}

// cancelOnMessage cancels as a message of kind passes to the destination
// (toDst) or to the source, before its reader has it.
func cancelOnMessage(toDst bool, kind uint32) func(*cancelSetup) {
	return func(a *cancelSetup) {
		a.s.p.delivered = func(d bool, m transport.Message) {
			if d == toDst && m.Kind == kind {
				a.cancel()
			}
		}
	}
}

// TestCancelRacesTheHold: a Cancel called on its own goroutine as the
// source reads LOADED (the source holds right after it) or as the
// destination reads COMMIT (it holds right after it; in every other run
// the reader goes on only once the Cancel's goroutine started) takes or
// not, and the migration ends as it answered, every time.
func TestCancelRacesTheHold(t *testing.T) {
	var took, refused int
	for i := 0; i < 40; i++ {
		onDst := i%2 == 1
		c := runCancel(t, onDst, func(a *cancelSetup) {
			at, toDst := uint32(msgLoaded), false
			if onDst {
				at, toDst = msgCommit, true
			}
			a.s.p.delivered = func(d bool, m transport.Message) {
				if d == toDst && m.Kind == at {
					// Every other pair of runs: a closer race, the Cancel
					// under way as the reader goes on.
					a.cancelAsync(i%4 >= 2)
				}
			}
		})
		c.check(t, onDst)
		if t.Failed() {
			t.Fatalf("run %d (destination %v): took %v", i, onDst, c.took)
		}
		if c.took {
			took++
		} else {
			refused++
		}
	}
	t.Logf("cancels taken %d, refused %d", took, refused)
}

// TestCancelDecidesWithHold: a Cancel that took before a side started
// (a VMM cancelling while its session opens) ends the side's context at
// once, with the Cancel's cause on ctx; one after the side held is
// refused, applies nothing and says which hold; one whose side's context
// does not follow ctx's cancel (a context in between that drops it) ends
// that side itself, at once.
func TestCancelDecidesWithHold(t *testing.T) {
	ctx, c := NewCancel(context.Background())
	if took, _ := c.Cancel(errOperator); !took {
		t.Fatal("a Cancel before the side started was refused")
	}
	h := holdable(ctx, func(error) { t.Error("ignored: the cancel came first") })
	if !errors.Is(h.Err(), context.Canceled) || h.hold(false) || !errors.Is(context.Cause(ctx), errOperator) {
		t.Errorf("after a Cancel that took: side's err %v, ctx's cause %v", h.Err(), context.Cause(ctx))
	}
	h.release()

	for _, pc := range []bool{false, true} {
		ctx, c := NewCancel(context.Background())
		h := holdable(ctx, func(error) { t.Error("ignored: a refused cancel must not be applied") })
		if !h.hold(pc) {
			t.Fatal("hold failed on a live context")
		}
		if took, postcopy := c.Cancel(errOperator); took || postcopy != pc || ctx.Err() != nil || h.Err() != nil {
			t.Errorf("held (post-copy %v): took %v, post-copy %v; ctx %v, side %v", pc, took, postcopy, ctx.Err(), h.Err())
		}
		h.release()
	}

	ctx, c = NewCancel(context.Background())
	h = holdable(context.WithoutCancel(ctx), func(error) {})
	defer h.release()
	took, _ := c.Cancel(errOperator)
	select {
	case <-h.Done():
	default:
		t.Error("the Cancel took, but the side's context is not done")
	}
	if !took || h.hold(false) {
		t.Errorf("took %v; the side could still hold", took)
	}
}

// TestCancelAnswersPostcopy: a post-copy source's Cancel in its report
// right after its hold (committing, mode post-copy) is refused and says
// post-copy; the guest runs on the destination, every page arrives, the
// source never resumes. In its switch-over report (before the pause) it
// takes: the source resumes and runs on, and reports cancelled.
func TestCancelAnswersPostcopy(t *testing.T) {
	for _, h := range []Handover{HandoverSwitchover, HandoverCommitting} {
		t.Run(h.String(), func(t *testing.T) {
			src := dataGuest(t, 8*mib)
			allDirtyAfterBulk(src)
			var c *Cancel
			var called, took, postcopy bool
			opt := Options{Postcopy: PostcopyAlways, Progress: func(p Progress) {
				if p.Handover == h && !called {
					called = true
					took, postcopy = c.Cancel(errOperator)
				}
			}}
			d, r := runPostcopy(t, src, opt, func(d *scriptDst) {
				d.srcCtx = func(ctx context.Context) context.Context {
					ctx, c = NewCancel(ctx)
					return ctx
				}
			})
			switch {
			case !called:
				t.Fatal("no report said " + h.String())
			case h == HandoverSwitchover && (!took || postcopy):
				t.Fatalf("before the pause: took %v, post-copy %v; want took", took, postcopy)
			case h == HandoverSwitchover && (r.serr == nil || r.srep.Status != StatusCancelled || src.resumed != 1):
				t.Fatalf("took, but send: %v (status %q), resumed %d", r.serr, r.srep.Status, src.resumed)
			case h == HandoverSwitchover:
				return
			case took || !postcopy:
				t.Fatalf("at the hold: took %v, post-copy %v; want refused, post-copy", took, postcopy)
			case r.serr != nil || r.derr != nil || r.srep.Status != StatusCompleted || src.resumed != 0:
				t.Fatalf("refused, but send: %v (status %q), destination: %v, source resumed %d", r.serr, r.srep.Status, r.derr, src.resumed)
			}
			d.check(t)
		})
	}
}

// TestCancelReportsCancelled: a Cancel that took ends its side
// cancelled, also when what the side waited on broke on the cancel first
// (a transport whose session ends with the cancelled call answers
// "closed", not the context's error). Before, that side reported failed
// with the broken session as its error, as if the link had failed: an
// operator told {"cancelled": true} read "failed: destination went
// away" (TestCancelRacesTheHold saw it in about 1 run of 50).
func TestCancelReportsCancelled(t *testing.T) {
	for _, tc := range []struct {
		name  string
		onDst bool
		kind  uint32 // the message whose send breaks on the cancel
	}{
		{"source, sending the state", false, msgState},
		{"destination, answering HELLO", true, msgReady},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := runCancel(t, tc.onDst, func(a *cancelSetup) {
				a.s.p.sendErr = func(toDst bool, m transport.Message) error {
					if toDst == !tc.onDst && m.Kind == tc.kind {
						a.cancel()
						return transport.ErrClosed
					}
					return nil
				}
			})
			rep, err := c.srep, c.serr
			if tc.onDst {
				rep, err = c.drep, c.derr
			}
			if !c.took {
				t.Fatal("the Cancel was refused before any hold")
			}
			if rep.Status != StatusCancelled || !errors.Is(err, context.Canceled) || !errors.Is(err, transport.ErrClosed) {
				t.Errorf("the cancelled side ended %s: %v; want cancelled, the broken session still in the error", rep.Status, err)
			}
			if c.src.paused || c.dst.resumed != 0 {
				t.Errorf("the source is paused %v, the destination resumed %d times: the guest must run on the source",
					c.src.paused, c.dst.resumed)
			}
		})
	}
}

// reopened is a receiving transport that says when it is opened again
// (a destination's pcRecv.uncommitted waiting for its source).
type reopened struct {
	transport.Transport
	opens int // Open is called by Receive's goroutine only
	again chan struct{}
}

func (r *reopened) Open(ctx context.Context, req transport.OpenRequest) error {
	if r.opens++; r.opens == 2 {
		close(r.again)
	}
	return r.Transport.Open(ctx, req)
}

// TestCancelWhileUncommitted: a post-copy destination whose stream broke
// after LOADED, before COMMIT arrived, waits for its source to reconnect
// (pcRecv.uncommitted). A Cancel there takes (nothing held: the VM never
// ran here) and ends the wait, but the destination cannot tell the
// source, which may have written COMMIT: it ends handover-unknown, never
// cancelled, and keeps its paused copy until resolved. The answer
// "cancelled" does not mean the guest already runs on the source
// (vmm/api CancelResult says so).
func TestCancelWhileUncommitted(t *testing.T) {
	s, dst, rcv, opt := pcSetup(t, vmtest.Options{})
	opt.ReconnectTimeout = time.Minute
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cctx, c := NewCancel(ctx)
	tr := &reopened{Transport: rcv, again: make(chan struct{})}
	wait := receiveAsync(cctx, dst, tr, opt)
	never, stale := pcPages(s)
	failed := runScript(func() {
		s.precopy(ctx, never, stale, false)
		s.tr.Close() // COMMIT, if written, lost with the connection
	})
	if failed {
		rep, err := wait()
		t.Fatalf("script failed; Receive: %v (%+v)", err, rep)
	}
	select {
	case <-tr.again:
	case <-ctx.Done():
		t.Fatal("the destination never waited for its source again")
	}
	took, postcopy := c.Cancel(errOperator)
	rep, err := wait()
	if !took || postcopy {
		t.Errorf("Cancel: took %v, post-copy %v; want took", took, postcopy)
	}
	if !errors.Is(err, ErrHandoverUnknown) || rep.Status != StatusHandoverUnknown || dst.Counters().Resumes != 0 {
		t.Errorf("Receive: %v, status %s, resumes %d; want handover-unknown, never resumed", err, rep.Status, dst.Counters().Resumes)
	}
	// The Cancel ended the listening: the report must say so, not that
	// reconnect_timeout passed without a source (it said that until
	// 2026-12-08, a minute early).
	if msg := fmt.Sprint(err); strings.Contains(msg, "within reconnect_timeout") || !strings.Contains(msg, "cancelled while listening") {
		t.Errorf("Receive: %v; want it to say the cancel ended the listening, not reconnect_timeout", err)
	}
}

// TestCancelNested: a Cancel whose context another NewCancel derived
// from (an embedder's own Cancel around its library's) decides with
// the holds of the sides under the inner one too. Before, only the
// innermost Cancel knew the sides: the outer one, asked after a side
// held, answered took, and its cancel was ignored (the migration
// completed). Either Cancel that took ends every side, also one that
// starts later.
func TestCancelNested(t *testing.T) {
	octx, outer := NewCancel(context.Background())
	ictx, inner := NewCancel(octx)
	h := holdable(ictx, func(error) {})
	defer h.release()
	if !h.hold(false) {
		t.Fatal("hold failed on a live context")
	}
	if took, _ := outer.Cancel(errOperator); took || octx.Err() != nil || h.Err() != nil {
		t.Errorf("the outer Cancel after the hold: took %v, its ctx %v, the side %v; want refused, nothing cancelled",
			took, octx.Err(), h.Err())
	}
	if took, _ := inner.Cancel(errOperator); took || ictx.Err() != nil {
		t.Errorf("the inner Cancel after the hold: took %v, its ctx %v; want refused", took, ictx.Err())
	}

	octx, outer = NewCancel(context.Background())
	ictx, inner = NewCancel(context.WithoutCancel(octx)) // the inner ctx does not follow the outer's cancel
	first := holdable(ictx, func(error) {})
	defer first.release()
	if took, _ := outer.Cancel(errOperator); !took {
		t.Fatal("the outer Cancel before any hold was refused")
	}
	later := holdable(ictx, func(error) {})
	defer later.release()
	for i, h := range []*heldCtx{first, later} {
		select {
		case <-h.Done():
		default:
			t.Errorf("side %d: the outer Cancel took, but its context is not done", i)
		}
		if h.hold(false) {
			t.Errorf("side %d could still hold", i)
		}
	}
	if took, _ := inner.Cancel(errOperator); !took {
		t.Error("the inner Cancel after the outer one took was refused")
	}
}
