package engine

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/transport/loopback"
	"github.com/ferryvm/ferry/framework/vmtest"
)

// A post-copy source whose COMMIT went out but whose RUNNING never came
// asks, by reconnecting, whether its destination got COMMIT. Only the
// ABORT that answers its RESUME, from a destination of this migration
// that never got COMMIT (pcRecv.uncommitted), lets it resume its copy:
// any other ABORT comes from a destination that does not know whether
// COMMIT arrived (a fresh one at the same address), and resuming on it
// could run an older copy of a guest that already ran elsewhere.

// lateResume is a source's transport whose first RESUME reaches the
// destination too late: it goes out only once the destination sent its
// ABORT on that session (said), and is lost with the session the
// destination then closes (a RESUME read later than the destination's
// wait for a first message).
type lateResume struct {
	transport.Transport
	said <-chan struct{}
	done atomic.Bool
}

// SendMessage implements transport.Transport.SendMessage.
func (l *lateResume) SendMessage(ctx context.Context, m transport.Message) error {
	if m.Kind == msgResume && l.done.CompareAndSwap(false, true) {
		select {
		case <-l.said:
			return nil // written, never read: the destination closed first
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return l.Transport.SendMessage(ctx, m)
}

// abortSays is a destination's transport that closes said once it sent
// an ABORT, and keeps that ABORT's payload.
type abortSays struct {
	transport.Transport
	once    sync.Once
	said    chan struct{}
	payload []byte
}

// SendMessage implements transport.Transport.SendMessage.
func (a *abortSays) SendMessage(ctx context.Context, m transport.Message) error {
	err := a.Transport.SendMessage(ctx, m)
	if m.Kind == msgAbort {
		a.once.Do(func() { a.payload = m.Payload; close(a.said) })
	}
	return err
}

// TestPostcopyFreshDestinationAbortNotResumed: COMMIT reaches the
// destination, which runs the guest and dies before RUNNING goes out. A
// fresh destination (the engine's Receive, no migration ID, a transport
// that lets any authenticated source in) listens at the same address;
// the source's RESUME reaches it later than its switchover_timeout, so
// it closes the session as silent with an ABORT (waitAgain). That ABORT
// does not answer the RESUME: the source must not resume its paused copy
// (the guest ran on the dead destination) and ends handover-unknown
// after reconnect_timeout. Before, it took that ABORT for "never got
// COMMIT" and resumed the guest here: rewound.
func TestPostcopyFreshDestinationAbortNotResumed(t *testing.T) {
	src := dataGuest(t, 8*mib)
	allDirtyAfterBulk(src)
	said := &abortSays{said: make(chan struct{})}
	fresh := newFakeVM(t, regionsOf(src.layout)...)
	var freshErr error
	opt := Options{Postcopy: PostcopyAlways, SwitchoverTimeout: 5 * time.Second, ReconnectTimeout: 2 * time.Second}
	d, r := runPostcopy(t, src, opt, func(d *scriptDst) {
		d.wrapSrc = func(tr transport.Transport) transport.Transport { return &lateResume{Transport: tr, said: said.said} }
		d.freshRun = func(ctx context.Context) error {
			said.Transport = d.tr
			_, freshErr = Receive(ctx, fresh, said, Options{Credentials: d.req.Credentials, SwitchoverTimeout: 300 * time.Millisecond,
				Log: testLogger(t)})
			return nil
		}
	})
	select {
	case <-said.said:
	default:
		t.Fatalf("the fresh destination sent no ABORT: the test did not test it; send %v (%s), fresh destination %v", r.serr, r.srep.Status, freshErr)
	}
	if !strings.Contains(string(said.payload), "heard no HELLO") {
		t.Fatalf("the fresh destination's ABORT said %q, want its silent-session reason", said.payload)
	}
	if !errors.Is(r.serr, ErrHandoverUnknown) || r.srep.Handover != HandoverUnknown || r.srep.Status != StatusHandoverUnknown {
		t.Errorf("source: %v, handover %v, status %q; want handover-unknown", r.serr, r.srep.Handover, r.srep.Status)
	}
	if !src.paused || src.resumed != 0 {
		t.Errorf("source paused %v, resumed %d: it resumed a copy the destination that got COMMIT ran past", src.paused, src.resumed)
	}
	if d.vm.resumed != 1 || fresh.resumed != 0 {
		t.Errorf("the destination that got COMMIT ran the guest %d times, the fresh one %d", d.vm.resumed, fresh.resumed)
	}
}

// TestPostcopyAbortLostTwice: as TestPostcopyAbortAfterResumeLost, but
// the destination's ABORT is lost with the connection twice, at the
// first RESUME and again at the next. The lingering destination answers
// every RESUME of its source until one answer is heard: the source
// resumes the VM at once. Before, it repeated ABORT once only and then
// quit, and the source reconnected to nobody until its reconnect_timeout
// and ended handover-unknown.
func TestPostcopyAbortLostTwice(t *testing.T) {
	const reconnect = 10 * time.Second
	start := time.Now()
	tr := &loseCommitAndAbort{lose: 2}
	r, dst := bothEngines(t, func(str transport.Transport) transport.Transport { tr.Transport = str; return tr },
		func(sopt, dopt *Options) { sopt.ReconnectTimeout = reconnect })
	took := time.Since(start)
	if tr.commitLost != 1 || tr.abortsSeen < 3 {
		t.Fatalf("COMMIT lost %d times, ABORTs seen %d (want 3: two lost, one heard); send %v (%s), receive %v (%s)",
			tr.commitLost, tr.abortsSeen, r.serr, r.srep.Status, r.derr, r.drep.Status)
	}
	abortHeard(t, r, dst, took, reconnect)
}

// TestPostcopyAbortLingerCoversDoubledWait: COMMIT is lost; the
// destination answers the source's RESUME with ABORT, and the connection
// dies silently with it in it (neither side sees it end). The source,
// whose earlier tries in a row went unanswered, waits quietBound
// (switchover_timeout doubled five times) for that answer before it
// tries again: longer than the destination's wait for the source's
// answer (settledLinger) and its old linger (brokenLinger +
// max(stall_timeout, switchover_timeout) + stallRestart) together. The
// destination must still listen then, and tell it ABORT again. Before,
// it had stopped listening, and the source would have ended
// handover-unknown after reconnect_timeout.
func TestPostcopyAbortLingerCoversDoubledWait(t *testing.T) {
	oldLinger, oldRestart := brokenLinger, stallRestart
	brokenLinger, stallRestart = 100*time.Millisecond, 100*time.Millisecond
	t.Cleanup(func() { brokenLinger, stallRestart = oldLinger, oldRestart })
	s, dst, rcv, opt := pcSetup(t, vmtest.Options{})
	opt.SwitchoverTimeout, opt.StallTimeout, opt.ReconnectTimeout = 200*time.Millisecond, 200*time.Millisecond, time.Minute
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	d := destination(rcv, false)
	wait := receiveAsync(ctx, dst, d, opt)
	never, stale := pcPages(s)
	wait5 := quietBound(opt.SwitchoverTimeout, 5)
	if wait5 <= settledLinger+brokenLinger+max(opt.StallTimeout, opt.SwitchoverTimeout)+stallRestart {
		t.Fatalf("the source's wait %v does not outlast the old linger: the test would prove nothing", wait5)
	}
	var abort []byte
	failed := runScript(func() {
		s.precopy(ctx, never, stale, false)
		s.tr.Close()             // COMMIT lost with the connection
		s.awaitListening(ctx, d) // for the source's RESUME
		must(t, s.tr.Open(ctx, s.req))
		s.send(ctx, msgResume, testResume(s.pages, s.tag))
		s.recv(ctx, msgAbort) // lost: the connection died silently with it
		// The source waits out its bound for an answer (the time that
		// passes in this scenario, not a synchronisation), then tries
		// again.
		select {
		case <-time.After(wait5):
		case <-ctx.Done():
		}
		s.tr.Close()
		octx, ocancel := context.WithTimeout(ctx, 5*time.Second)
		defer ocancel()
		if err := s.tr.Open(octx, s.req); err != nil {
			t.Errorf("the source's next try, %v after the ABORT, found no destination listening: %v", wait5, err)
			panic(errScript)
		}
		s.send(ctx, msgResume, testResume(s.pages, s.tag))
		abort = s.recv(ctx, msgAbort)
		s.send(ctx, msgAbort, nil) // heard (pcSend.answer)
	})
	rep, err := wait()
	if failed {
		t.Fatalf("script failed; Receive: %v (%s)", err, rep.Handover)
	}
	if _, answers := resumeAbort(abort, s.tag); !answers {
		t.Errorf("the repeated ABORT %q does not answer the RESUME", abort)
	}
	if err == nil || rep.Handover != HandoverFailed || dst.Counters().Resumes != 0 || !strings.Contains(err.Error(), "answered after reconnecting") {
		t.Fatalf("Receive: %v, report %+v, resumes %d", err, rep, dst.Counters().Resumes)
	}
}

// opensNth is a destination's transport that closes nth as its nth Open
// begins.
type opensNth struct {
	transport.Transport
	n     int32
	opens atomic.Int32
	nth   chan struct{}
}

// Open implements transport.Transport.Open.
func (o *opensNth) Open(ctx context.Context, req transport.OpenRequest) error {
	if o.opens.Add(1) == o.n {
		close(o.nth)
	}
	return o.Transport.Open(ctx, req)
}

// lingerAfterAbort starts Receive (opt) under a context of its own, a
// child of ctx, and plays a post-copy source whose COMMIT is lost with
// the connection, which reconnects, sends RESUME, reads the
// destination's ABORT and never answers it. It returns once the
// destination listens again for the source's RESUME (lingerToTell),
// with Receive's wait and the cancel of its context.
func lingerAfterAbort(t *testing.T, ctx context.Context, s *script, dst *vmtest.VM, rcv *loopback.Transport, opt Options) (
	wait func() (Report, error), rcancel context.CancelFunc) {
	t.Helper()
	rctx, rcancel := context.WithCancel(ctx)
	d := &opensNth{Transport: destination(rcv, false), n: 3, nth: make(chan struct{})}
	wait = receiveAsync(rctx, dst, d, opt)
	never, stale := pcPages(s)
	failed := runScript(func() {
		s.precopy(ctx, never, stale, false)
		s.tr.Close()                                  // COMMIT lost with the connection
		s.awaitListening(ctx, d.Transport.(*reopens)) // for the source's RESUME
		must(t, s.tr.Open(ctx, s.req))
		s.send(ctx, msgResume, testResume(s.pages, s.tag))
		s.recv(ctx, msgAbort)
		s.tr.Close() // the source never answers: the destination lingers
	})
	if failed {
		rcancel()
		rep, err := wait()
		t.Fatalf("script failed; Receive: %v (%s)", err, rep.Handover)
	}
	select {
	case <-d.nth: // lingering: listening for the next RESUME
	case <-ctx.Done():
		rcancel()
		t.Fatal("the destination did not listen again for the source's RESUME")
	}
	return wait, rcancel
}

// TestPostcopyAbortLingerCancelled: a destination that never got COMMIT
// told the source ABORT, heard no answer, and listens for the source's
// next RESUME (lingerToTell: by default up to 350 s, counted again from
// each RESUME answered in vain). The VM never ran there, so a cancel (a
// VMM's shutdown or migrate-cancel, a resolve's cancel beside a running
// source) must end that wait at once, not after it.
func TestPostcopyAbortLingerCancelled(t *testing.T) {
	s, dst, rcv, opt := pcSetup(t, vmtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	wait, rcancel := lingerAfterAbort(t, ctx, s, dst, rcv, opt)
	defer rcancel()
	cancelled := time.Now()
	rcancel()
	rep, err := wait()
	if took := time.Since(cancelled); took > 3*time.Second {
		t.Errorf("Receive returned %v after the cancel: the linger did not end with it", took.Round(time.Millisecond))
	}
	if rep.Handover != HandoverFailed || dst.Counters().Resumes != 0 {
		t.Errorf("Receive: %v, handover %s, resumes %d; want failed, never run", err, rep.Handover, dst.Counters().Resumes)
	}
}

// TestPostcopyAbortLingerReportsFailed: a destination that never got
// COMMIT answered the source's RESUME with ABORT and lingers for its
// next RESUME (lingerToTell: minutes by default). Its handover is
// failed from that ABORT on, and its Progress must say so while Receive
// still runs: a VMM reports the migration's side from it, and migrate's
// resolve resumes a handover-unknown source beside a destination that
// says failed, instead of waiting out the linger beside one that says
// loaded. Receive still returns failed, the VM never run.
func TestPostcopyAbortLingerReportsFailed(t *testing.T) {
	s, dst, rcv, opt := pcSetup(t, vmtest.Options{})
	var mu sync.Mutex
	var last Progress
	opt.Progress = func(p Progress) { mu.Lock(); last = p; mu.Unlock() }
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	wait, rcancel := lingerAfterAbort(t, ctx, s, dst, rcv, opt)
	defer rcancel()
	mu.Lock()
	p := last
	mu.Unlock()
	if p.Handover != HandoverFailed || p.Phase == PhaseDone {
		t.Errorf("while the ABORT lingers, the last progress says handover %s, phase %s; want failed, before done", p.Handover, p.Phase)
	}
	rcancel()
	rep, err := wait()
	if rep.Handover != HandoverFailed || dst.Counters().Resumes != 0 {
		t.Errorf("Receive: %v, handover %s, resumes %d; want failed, never run", err, rep.Handover, dst.Counters().Resumes)
	}
}
