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
	"github.com/ferryvm/ferry/framework/vmtest"
)

// A post-copy destination that got COMMIT and then does not run the VM
// (its fault service failed first, its caller cancelled, or Resume
// failed: pcRecv.abortCommit) tells the source ABORT as one that
// refused COMMIT does (refusedlinger_test.go): the ABORT lingers for a
// source that lost it with its session and reconnects with RESUME.

// errWillNotRun is the destination VM's Resume failing.
var errWillNotRun = errors.New("vCPUs will not run (test)")

// TestPostcopyResumeFailedAbortLost: both engines in post-copy; the
// destination's Resume fails at COMMIT, and its ABORT is lost with the
// connection. The destination, unanswered, listens for the source's
// RESUME and answers it with ABORT: the source resumes the VM, and the
// destination never ran it. Before, the destination sent its ABORT once
// (giveUp) and quit, and the source reconnected to nobody for its
// reconnect_timeout and ended handover-unknown, its copy paused.
func TestPostcopyResumeFailedAbortLost(t *testing.T) {
	const reconnect = 10 * time.Second
	str := &loseAbortAfterCommit{}
	var src *vmtest.VM
	start := time.Now()
	r, dst := bothEnginesInto(t, vmtest.Options{FailResume: errWillNotRun},
		func(tr transport.Transport, v *vmtest.VM) transport.Transport { str.Transport, src = tr, v; return str },
		func(tr transport.Transport, _ *vmtest.VM) transport.Transport { return tr },
		func(sopt, dopt *Options) { sopt.ReconnectTimeout = reconnect })
	took := time.Since(start)
	t.Logf("source: %s (%s) %v\ndestination: %s (%s) %v", r.srep.Status, r.srep.Handover, r.serr, r.drep.Status,
		r.drep.Handover, r.derr)
	if !str.lost.Load() {
		t.Fatal("no ABORT after COMMIT was lost: the test did not test it")
	}
	if !errors.Is(r.derr, errWillNotRun) {
		t.Errorf("destination: %v; want its Resume's failure", r.derr)
	}
	if errors.Is(r.serr, ErrHandoverUnknown) {
		t.Errorf("source: %v; it never heard the ABORT", r.serr)
	}
	abortHeard(t, r, dst, took, reconnect)
	if src.State() != vmtest.StateRunning || src.Counters().Resumes != 1 {
		t.Errorf("source VM %v (%+v): want running, resumed once", src.State(), src.Counters())
	}
}

// failLaneAtCommit is the destination's transport whose landed lane
// fails for good as COMMIT is handed over: it then reports a write past
// the end of guest RAM (errLandedInvalid), the lane's in-flight Landed
// cut for it. COMMIT is handed on once the receive loop's wait ended
// (watchSetup saw the lane's end) or 5 s passed; laneFirst says the
// first. The engine then acts on a COMMIT after its fault service failed
// (pcRecv.failedEarly).
type failLaneAtCommit struct {
	transport.Transport
	pages uint64

	mu       sync.Mutex
	poisoned bool
	cut      context.CancelFunc // the lane's Landed in flight

	fired     atomic.Bool
	laneFirst atomic.Bool
}

// poison is the run the lane reports once COMMIT came: past guest RAM.
func (f *failLaneAtCommit) poison() []transport.PageRun {
	return []transport.PageRun{{First: f.pages, Count: 1, Kind: transport.KindData}}
}

// Landed implements transport.Transport.Landed; the landed lane alone
// calls it.
func (f *failLaneAtCommit) Landed(ctx context.Context) ([]transport.PageRun, error) {
	f.mu.Lock()
	if f.poisoned {
		f.mu.Unlock()
		return f.poison(), nil
	}
	lctx, cancel := context.WithCancel(ctx)
	f.cut = cancel
	f.mu.Unlock()
	defer cancel()
	runs, err := f.Transport.Landed(lctx)
	f.mu.Lock()
	poisoned := f.poisoned
	f.mu.Unlock()
	if poisoned && ctx.Err() == nil {
		return f.poison(), nil
	}
	return runs, err
}

// RecvMessage implements transport.Transport.RecvMessage.
func (f *failLaneAtCommit) RecvMessage(ctx context.Context) (transport.Message, error) {
	m, err := f.Transport.RecvMessage(ctx)
	if err != nil || m.Kind != msgCommit || !f.fired.CompareAndSwap(false, true) {
		return m, err
	}
	f.poisonLane()
	select {
	case <-ctx.Done():
		f.laneFirst.Store(errors.Is(context.Cause(ctx), errPostcopySetup))
	case <-time.After(5 * time.Second):
	}
	return m, nil
}

// poisonLane makes the lane fail for good now: its Landed in flight is
// cut and reports the poisoned run, and so does every later one.
func (f *failLaneAtCommit) poisonLane() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.poisoned = true
	if f.cut != nil {
		f.cut()
	}
}

// TestPostcopyFailedEarlyAbortLost: both engines in post-copy; the
// destination's landed lane fails for good as COMMIT arrives, so it
// acts on a COMMIT after its fault service failed (failedEarly) and
// answers ABORT, which is lost with the connection. As for a Resume
// that failed, the ABORT lingers and answers the source's RESUME: the
// source resumes the VM. Before, it went once (giveUp), and the source
// ended handover-unknown after its reconnect_timeout. The telling must
// not run under the receive loop's context, which the lane's end cut
// (watchSetup): under it, the waits would end at once.
func TestPostcopyFailedEarlyAbortLost(t *testing.T) {
	const reconnect = 10 * time.Second
	str := &loseAbortAfterCommit{}
	var fl *failLaneAtCommit
	var src *vmtest.VM
	start := time.Now()
	r, dst := bothEnginesInto(t, vmtest.Options{},
		func(tr transport.Transport, v *vmtest.VM) transport.Transport { str.Transport, src = tr, v; return str },
		func(tr transport.Transport, v *vmtest.VM) transport.Transport {
			fl = &failLaneAtCommit{Transport: tr, pages: v.Pages()}
			return fl
		},
		func(sopt, dopt *Options) { sopt.ReconnectTimeout = reconnect })
	took := time.Since(start)
	t.Logf("source: %s (%s) %v\ndestination: %s (%s) %v", r.srep.Status, r.srep.Handover, r.serr, r.drep.Status,
		r.drep.Handover, r.derr)
	if !fl.laneFirst.Load() || !str.lost.Load() {
		t.Fatalf("the lane failed before COMMIT was handed on %v, ABORT after COMMIT lost %v: the test did not test it",
			fl.laneFirst.Load(), str.lost.Load())
	}
	if r.derr == nil || !strings.Contains(r.derr.Error(), "before the switch") {
		t.Errorf("destination: %v; want the fault service's failure before the switch", r.derr)
	}
	if errors.Is(r.serr, ErrHandoverUnknown) {
		t.Errorf("source: %v; it never heard the ABORT", r.serr)
	}
	abortHeard(t, r, dst, took, reconnect)
	if src.State() != vmtest.StateRunning || src.Counters().Resumes != 1 {
		t.Errorf("source VM %v (%+v): want running, resumed once", src.State(), src.Counters())
	}
}

// TestPostcopyResumeFailedCancelEndsTelling: a post-copy destination
// whose Resume at COMMIT failed (held: a Cancel is refused) answers
// ABORT, which its source (a script) reads and does not answer; a
// Cancel then, refused, ends the telling: Receive returns failed at
// once, as a VMM's migrate-cancel and its shutdown (whose refused
// Resume this is) expect ("ends failed within seconds"), instead of
// listening for the source's RESUME for minutes.
func TestPostcopyResumeFailedCancelEndsTelling(t *testing.T) {
	s, dst, rcv, opt := pcSetup(t, vmtest.Options{FailResume: errWillNotRun})
	failed := make(chan struct{})
	var once sync.Once
	opt.Progress = func(p Progress) {
		if p.Handover == HandoverFailed {
			once.Do(func() { close(failed) })
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cctx, c := NewCancel(ctx)
	wait := receiveAsync(cctx, dst, rcv, opt)
	defer s.tr.Close()
	never, stale := pcPages(s)
	var answer transport.Message
	var aerr error
	scriptFailed := runScript(func() {
		s.precopyThenCommit(ctx, never, stale)
		answer, aerr = s.tr.RecvMessage(ctx) // not answered: the destination tells on
	})
	if scriptFailed {
		t.Fatal("script failed")
	}
	select {
	case <-failed:
	case <-ctx.Done():
		t.Fatal("the destination never reported failed")
	}
	took, postcopy := c.Cancel(errors.New("test cancel"))
	done := make(chan struct{})
	var err error
	go func() { _, err = wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Receive still tells its source 10 s after a Cancel: the Cancel did not end the telling")
	}
	t.Logf("COMMIT answered %s %q (%v); Cancel took %v postcopy %v; Receive: %v", msgName(answer.Kind), answer.Payload,
		aerr, took, postcopy, err)
	if aerr != nil || answer.Kind != msgAbort {
		t.Errorf("COMMIT answered %s (%v); want ABORT", msgName(answer.Kind), aerr)
	}
	if took || !postcopy {
		t.Errorf("Cancel took %v, postcopy %v; want refused, held for post-copy", took, postcopy)
	}
	if !errors.Is(err, errWillNotRun) {
		t.Errorf("Receive: %v; want the Resume's failure", err)
	}
	if n := dst.Counters().Resumes; n != 0 {
		t.Errorf("destination resumed %d times", n)
	}
}

// TestPostcopyCancelAtCommitAborts: a post-copy destination whose
// caller cancels Receive as COMMIT is handed over never runs the VM and
// answers ABORT whatever the cancel (abortCommit's send), and does not
// stay to tell it again: the cancel ends the telling's waits at once.
// What that leaves: a source that loses this ABORT ends handover-unknown
// after its reconnect_timeout (migrate -resolve resumes it beside this
// failed side).
func TestPostcopyCancelAtCommitAborts(t *testing.T) {
	d := pcReceive(t, pcDestCase{cancelAtCommit: true})
	s, ctx := d.s, d.ctx
	var answer transport.Message
	var aerr error
	failed := runScript(func() {
		s.precopyThenCommit(ctx, d.never, d.stale)
		answer, aerr = s.tr.RecvMessage(ctx) // not answered: the cancel ends the wait for it
	})
	if failed {
		t.Fatal("script failed")
	}
	done := make(chan struct{})
	var rep Report
	var err error
	go func() { rep, err = d.wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Receive, cancelled, still tells its source after 10 s")
	}
	t.Logf("COMMIT answered %s %q (%v); Receive: %s: %v", msgName(answer.Kind), answer.Payload, aerr, rep.Status, err)
	if aerr != nil || answer.Kind != msgAbort || !strings.Contains(string(answer.Payload), "cancelled as COMMIT arrived") {
		t.Errorf("COMMIT answered %s %q (%v); want the ABORT that says it was cancelled", msgName(answer.Kind), answer.Payload, aerr)
	}
	if rep.Status != StatusCancelled || rep.Handover != HandoverFailed {
		t.Errorf("Receive: %s (%s): %v; want cancelled, failed", rep.Status, rep.Handover, err)
	}
	wantNeverResumed(t, d.dst)
}
