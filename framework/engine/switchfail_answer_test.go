package engine

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
)

// stuckAnswer is the source's transport whose first SendPagesUrgent
// holds before its pages go, as a write stuck on a slow link, until
// release is closed (then the pages go) or its context ends (then it
// is cut). It records what the source's VM saw of it at Resume.
type stuckAnswer struct {
	transport.Transport
	release chan struct{}

	mu            sync.Mutex
	started       bool // the first answer began
	inFlight      bool // it is being held
	cut           bool // its context ended while it was held
	inFlightAtRes bool // it was still held when the source resumed the VM
}

// SendPagesUrgent implements transport.Transport: the first call holds
// (see the type).
func (s *stuckAnswer) SendPagesUrgent(ctx context.Context, runs []transport.PageRun) error {
	s.mu.Lock()
	first := !s.started
	s.started, s.inFlight = true, first
	s.mu.Unlock()
	if first {
		select {
		case <-s.release:
		case <-ctx.Done():
			s.mu.Lock()
			s.cut, s.inFlight = true, false
			s.mu.Unlock()
			return ctx.Err()
		}
		s.mu.Lock()
		s.inFlight = false
		s.mu.Unlock()
	}
	return s.Transport.SendPagesUrgent(ctx, runs)
}

// resumed notes, at the source VM's Resume, whether the answer was still
// held, and lets it go.
func (s *stuckAnswer) resumed() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inFlightAtRes = s.inFlight
	select {
	case <-s.release:
	default:
		close(s.release)
	}
}

// TestPostcopySwitchFailResumesBeforeAnswer: a post-copy switch-over
// fails before COMMIT on its deadline (the destination's LoadState waits
// in a fault whose answer is stuck in its write) while that answer is
// in flight. The source resumes the VM at once, then lets the answer
// finish before its ABORT (stopServing). Until the fix it resumed only
// after stopServing returned: the answer, stuck, was waited for
// answerTimeout (2 s) and then cut, and the guest stayed paused that
// much past switchover_timeout, the bound on the pause that a failed
// switch-over promises (HANDOVER.md, "resumes within the deadline").
// No COMMIT went out: the destination never runs the guest, whatever the
// answer carries after the resume.
func TestPostcopySwitchFailResumesBeforeAnswer(t *testing.T) {
	src := dataGuest(t, 8*mib)
	allDirtyAfterBulk(src)
	stuck := &stuckAnswer{release: make(chan struct{})}
	src.onResume = stuck.resumed
	opt := Options{Postcopy: PostcopyAlways, SwitchoverTimeout: 300 * time.Millisecond}
	_, r := runPostcopy(t, src, opt, func(d *scriptDst) {
		d.loadFaults = []pageRun{{10, 1}}
		d.wrapSrc = func(tr transport.Transport) transport.Transport {
			stuck.Transport = tr
			return stuck
		}
	})
	if r.serr == nil || !strings.Contains(r.serr.Error(), "switchover_timeout") {
		t.Fatalf("send: %v, want the switch-over deadline's failure", r.serr)
	}
	src.mu.Lock()
	resumed := src.resumed
	src.mu.Unlock()
	stuck.mu.Lock()
	defer stuck.mu.Unlock()
	if !stuck.started {
		t.Fatal("no answer was in flight as the switch-over failed: the test did not test it")
	}
	if resumed != 1 {
		t.Errorf("source resumed %d times, want once", resumed)
	}
	if !stuck.inFlightAtRes {
		t.Error("the source resumed the VM only after the answer in flight ended: its pause outlasted switchover_timeout by that wait")
	}
	if stuck.cut {
		t.Error("the answer in flight was cut: its write may fail the session, and the ABORT after it")
	}
	if r.srep.Status != StatusFailed {
		t.Errorf("source: %s (%s), want failed", r.srep.Status, r.srep.Handover)
	}
}

// lateAnswers is the source's transport whose first SendPagesUrgent
// has a second REQUEST queued (on the destination's end, ask) and then
// holds until the request server's wait for REQUESTs ends (stopServing
// began); it counts the answers begun after that.
type lateAnswers struct {
	transport.Transport
	ask func()

	mu    sync.Mutex
	wait  <-chan struct{} // the request server's last RecvUrgent context's Done
	calls int
	late  int // answers begun once the wait had ended
}

// RecvUrgent implements transport.Transport, noting the wait.
func (l *lateAnswers) RecvUrgent(ctx context.Context) (transport.Message, error) {
	l.mu.Lock()
	l.wait = ctx.Done()
	l.mu.Unlock()
	return l.Transport.RecvUrgent(ctx)
}

// SendPagesUrgent implements transport.Transport (see the type).
func (l *lateAnswers) SendPagesUrgent(ctx context.Context, runs []transport.PageRun) error {
	l.mu.Lock()
	l.calls++
	first, wait := l.calls == 1, l.wait
	select {
	case <-wait:
		l.late++
	default:
	}
	l.mu.Unlock()
	if first {
		l.ask()
		select {
		case <-wait:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return l.Transport.SendPagesUrgent(ctx, runs)
}

// TestPostcopyStopServingTakesNoNewRequest: once stopServing ended the
// request server's wait for REQUESTs, a REQUEST already queued is not
// answered: stopServing joins the answer in flight only. A transport's
// RecvUrgent may return a queued message under a context that ended
// (loopback does); serve answered it, a new answer under the answers'
// context, which stopServing's graceful wait does not end, before the
// fix.
func TestPostcopyStopServingTakesNoNewRequest(t *testing.T) {
	src := dataGuest(t, 8*mib)
	allDirtyAfterBulk(src)
	late := &lateAnswers{}
	opt := Options{Postcopy: PostcopyAlways, SwitchoverTimeout: 300 * time.Millisecond}
	_, r := runPostcopy(t, src, opt, func(d *scriptDst) {
		d.loadFaults = []pageRun{{10, 1}}
		late.ask = func() { _ = d.request(context.Background(), []pageRun{{20, 1}}) }
		d.wrapSrc = func(tr transport.Transport) transport.Transport {
			late.Transport = tr
			return late
		}
	})
	if r.serr == nil {
		t.Fatal("send succeeded; want the switch-over deadline's failure")
	}
	late.mu.Lock()
	defer late.mu.Unlock()
	if late.calls == 0 {
		t.Fatal("no answer was in flight as the switch-over failed: the test did not test it")
	}
	if late.late != 0 {
		t.Errorf("%d answers begun after stopServing ended the wait for REQUESTs, want none", late.late)
	}
}
