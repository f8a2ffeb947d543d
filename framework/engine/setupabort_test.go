package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/vmtest"
)

// A post-copy destination whose fault service failed before COMMIT
// (watchSetup cut the receive loop's context: errPostcopySetup) and
// that never runs the VM must still tell a source that may have written
// COMMIT, and lost the ABORT with its session, when it reconnects with
// RESUME: the telling runs under Receive's own context, never under the
// loop's, which is already cut.

// abortLostThenResume is a source (the script) that reads the
// destination's ABORT, does not answer it, closes the session as one
// whose connection died with the ABORT in it, reconnects within 5 s and
// sends RESUME: it returns the ABORT that answered that RESUME and
// answers it (heard), or fails the script if nobody listened.
func (s *script) abortLostThenResume(ctx context.Context) []byte {
	s.t.Helper()
	s.recv(ctx, msgAbort)
	s.tr.Close()
	octx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.tr.Open(octx, s.req); err != nil {
		s.t.Errorf("script: the source reconnected after the lost ABORT and found nobody listening: %v", err)
		panic(errScript)
	}
	s.send(ctx, msgResume, testResume(s.pages, s.tag))
	abort := s.recv(ctx, msgAbort)
	s.send(ctx, msgAbort, nil) // heard (pcSend.answer)
	return abort
}

// TestPostcopyRefusedCommitLaneFailedAbortLost: a post-copy destination
// whose landed lane fails for good as COMMIT arrives (the receive loop's
// context cut by watchSetup before COMMIT is handed on), and which
// refuses that COMMIT (the source promised the page check and sent no
// HASHES: commitRefused), answers ABORT; the source loses it and
// reconnects with RESUME, and must be answered ABORT with its tag.
// Before, refuseCommit told under the loop's context, already cut: the
// waits ended at once, and the source reconnected to nobody and, in a
// real run, ended handover-unknown after its reconnect_timeout.
func TestPostcopyRefusedCommitLaneFailedAbortLost(t *testing.T) {
	var fl *failLaneAtCommit
	d := pcReceive(t, pcDestCase{check: true, reconnect: 30 * time.Second,
		via: func(rcv transport.Transport, dst *vmtest.VM) transport.Transport {
			fl = &failLaneAtCommit{Transport: rcv, pages: dst.Pages()}
			return fl
		}})
	s, ctx := d.s, d.ctx
	var abort []byte
	failed := runScript(func() {
		s.precopyThenCommit(ctx, d.never, d.stale)
		abort = s.abortLostThenResume(ctx)
	})
	rep, err := d.ended(t)
	if !fl.laneFirst.Load() {
		t.Fatal("COMMIT was handed on before the lane's failure cut the receive loop: the test did not test it")
	}
	if failed {
		t.Fatal("script failed")
	}
	wantTaggedAbort(t, abort, s.tag, "refused COMMIT", "of a refused COMMIT")
	if !errors.Is(err, errCommitRefused) || rep.Handover != HandoverFailed {
		t.Errorf("Receive: %s (%s): %v; want failed, COMMIT refused", rep.Status, rep.Handover, err)
	}
	wantNeverResumed(t, d.dst)
}

// failLaneAfterLoaded is the destination's transport whose landed lane
// fails for good (failLaneAtCommit's poisoned run) once LOADED went
// out, before any COMMIT came: watchSetup then cuts the receive loop's
// wait for COMMIT.
type failLaneAfterLoaded struct{ *failLaneAtCommit }

// SendMessage implements transport.Transport.SendMessage.
func (f failLaneAfterLoaded) SendMessage(ctx context.Context, m transport.Message) error {
	err := f.failLaneAtCommit.SendMessage(ctx, m)
	if err == nil && m.Kind == msgLoaded && f.fired.CompareAndSwap(false, true) {
		f.poisonLane()
	}
	return err
}

// TestPostcopyLaneFailedAfterLoadedAbortLost: a post-copy destination
// (no page check) whose landed lane fails for good after LOADED went
// out, before COMMIT came, never runs the VM and tells the source ABORT;
// the source, which may have written COMMIT as the ABORT crossed it,
// loses that ABORT and reconnects with RESUME (recommit), and must be
// answered ABORT with its tag. Before, the ABORT went once (giveUp) and
// the destination quit: the source reconnected to nobody and, in a real
// run, ended handover-unknown after its reconnect_timeout.
func TestPostcopyLaneFailedAfterLoadedAbortLost(t *testing.T) {
	var fl failLaneAfterLoaded
	d := pcReceive(t, pcDestCase{reconnect: 30 * time.Second,
		via: func(rcv transport.Transport, dst *vmtest.VM) transport.Transport {
			fl = failLaneAfterLoaded{&failLaneAtCommit{Transport: rcv, pages: dst.Pages()}}
			return fl
		}})
	s, ctx := d.s, d.ctx
	var abort []byte
	failed := runScript(func() {
		s.precopy(ctx, d.never, d.stale, false)
		go s.serve(ctx)
		abort = s.abortLostThenResume(ctx) // its COMMIT crossed the ABORT, then the connection died
	})
	rep, err := d.ended(t)
	if !fl.fired.Load() {
		t.Fatal("the lane was not failed after LOADED: the test did not test it")
	}
	if failed {
		t.Fatal("script failed")
	}
	wantTaggedAbort(t, abort, s.tag, "fault service failed", "of a fault service that failed")
	wantSetupFailed(t, rep, err)
	wantNeverResumed(t, d.dst)
}

// failLaneAtVerified is the destination's transport whose landed lane
// fails for good as VERIFIED is to go out: the send waits until the
// failure cut it (watchSetup ends the receive loop's context, which the
// send runs under) and then, as a launched plugin's call cut by its
// context does, writes nothing.
type failLaneAtVerified struct{ *failLaneAtCommit }

// SendMessage implements transport.Transport.SendMessage.
func (f failLaneAtVerified) SendMessage(ctx context.Context, m transport.Message) error {
	if m.Kind != msgVerified || !f.fired.CompareAndSwap(false, true) {
		return f.failLaneAtCommit.SendMessage(ctx, m)
	}
	f.poisonLane()
	select {
	case <-ctx.Done():
		f.laneFirst.Store(errors.Is(context.Cause(ctx), errPostcopySetup))
		return ctx.Err()
	case <-time.After(5 * time.Second):
		return f.failLaneAtCommit.SendMessage(ctx, m)
	}
}

// TestPostcopyLaneFailedAtVerifiedAbortLost: a post-copy destination
// with the page check whose landed lane fails for good as VERIFIED is
// sent: the failure cuts the send (part of VERIFIED may have reached
// the source, which may then commit). It never runs the VM, so it must
// fail and tell the source ABORT, also to a source that lost it and
// reconnects with RESUME. Before, the cut send went to lostAfterLoaded
// under the receive loop's context, cut by that failure, whose wait for
// a RESUME (uncommitted) ended at once: the destination ended
// handover-unknown at once, sent no ABORT, and left a source that
// committed to reconnect to nobody.
func TestPostcopyLaneFailedAtVerifiedAbortLost(t *testing.T) {
	var fl failLaneAtVerified
	d := pcReceive(t, pcDestCase{check: true, reconnect: 30 * time.Second,
		via: func(rcv transport.Transport, dst *vmtest.VM) transport.Transport {
			fl = failLaneAtVerified{&failLaneAtCommit{Transport: rcv, pages: dst.Pages()}}
			return fl
		}})
	s, ctx := d.s, d.ctx
	var abort []byte
	failed := runScript(func() {
		s.toState(ctx, d.never, d.stale)
		s.recv(ctx, msgLoaded)
		go s.serve(ctx)
		s.send(ctx, msgHashes, s.hashesAll())
		abort = s.abortLostThenResume(ctx) // it read VERIFIED and committed, or not: the destination cannot tell
	})
	rep, err := d.ended(t)
	if !fl.laneFirst.Load() {
		t.Fatal("VERIFIED's send was not cut by the lane's failure: the test did not test it")
	}
	if failed {
		t.Fatal("script failed")
	}
	wantTaggedAbort(t, abort, s.tag, "fault service failed", "of a fault service that failed")
	wantSetupFailed(t, rep, err)
	wantNeverResumed(t, d.dst)
}

// errLoopFailed is the fault loop's failure failLoopWhileUncommitted
// makes.
var errLoopFailed = errors.New("read userfaultfd: input/output error")

// failLoopWhileUncommitted has uncommitted's listening begin with the
// fault loop ended and the receive loop's context cut by it
// (watchSetup: errPostcopySetup), as when the fault service fails just
// after a stream that broke past LOADED sent the destination there;
// listening is closed once it did.
func failLoopWhileUncommitted(t *testing.T) (listening chan struct{}) {
	listening = make(chan struct{})
	uncommittedListens = func(pc *pcRecv) {
		// The cut as watchSetup makes it for a fault loop that failed
		// (one stopped returns context.Canceled, which would report the
		// migration cancelled), then the loop's end itself.
		pc.r.stopLoop(fmt.Errorf("%w: fault loop: %w", errPostcopySetup, errLoopFailed))
		pc.stopLoop()
		<-pc.watchDone // watchSetup saw the loop end
		close(listening)
	}
	t.Cleanup(func() { uncommittedListens = nil })
	return listening
}

// TestPostcopyFaultLoopEndsWhileUncommitted: a post-copy destination
// whose stream broke after LOADED (no page check: the source may have
// written COMMIT) listens for the source's RESUME to answer ABORT
// (uncommitted); its fault loop ends as it begins to. The source, whose
// COMMIT was lost with the break, reconnects with RESUME and must be
// answered ABORT with its tag. Before, uncommitted listened under the
// receive loop's context, which the fault loop's end cut: it stopped
// listening at once and ended handover-unknown, saying "no source
// reconnected within reconnect_timeout", no ABORT sent; the source
// reconnected to nobody and, in a real run, ended handover-unknown after
// its reconnect_timeout (docs/model: the gap README's "Found" named).
func TestPostcopyFaultLoopEndsWhileUncommitted(t *testing.T) {
	listening := failLoopWhileUncommitted(t)
	d := pcReceive(t, pcDestCase{reconnect: 30 * time.Second})
	s, ctx := d.s, d.ctx
	var abort []byte
	failed := runScript(func() {
		s.precopy(ctx, d.never, d.stale, false)
		s.tr.Close() // COMMIT lost with the connection
		<-listening
		octx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := s.tr.Open(octx, s.req); err != nil {
			t.Errorf("script: the source reconnected after its COMMIT was lost and found nobody listening: %v", err)
			panic(errScript)
		}
		s.send(ctx, msgResume, testResume(s.pages, s.tag))
		abort = s.recv(ctx, msgAbort)
		s.send(ctx, msgAbort, nil) // heard (pcSend.answer)
	})
	rep, err := d.ended(t)
	if failed {
		t.Fatal("script failed")
	}
	wantTaggedAbort(t, abort, s.tag, "never received COMMIT", "saying it never received COMMIT")
	if rep.Status != StatusFailed || rep.Handover != HandoverFailed {
		t.Errorf("Receive: %s (%s): %v; want failed", rep.Status, rep.Handover, err)
	}
	wantNeverResumed(t, d.dst)
}

// TestPostcopyFaultLoopEndsWhileUncommittedNobody: as
// TestPostcopyFaultLoopEndsWhileUncommitted, but no source reconnects.
// The destination listens for reconnect_timeout, then fails (its fault
// service failed: the VM never runs here, as setupFailed decides), not
// handover-unknown, and says why. Before, it ended handover-unknown at
// once, claiming no source had reconnected within reconnect_timeout.
func TestPostcopyFaultLoopEndsWhileUncommittedNobody(t *testing.T) {
	const reconnect = 500 * time.Millisecond
	failLoopWhileUncommitted(t)
	d := pcReceive(t, pcDestCase{reconnect: reconnect})
	s := d.s
	var broke time.Time
	failed := runScript(func() {
		s.precopy(d.ctx, d.never, d.stale, false)
		broke = time.Now()
		s.tr.Close()
	})
	rep, err := d.wait()
	took := time.Since(broke)
	t.Logf("destination after %v: %s (%s): %v", took.Round(time.Millisecond), rep.Status, rep.Handover, err)
	if failed {
		t.Fatal("script failed")
	}
	if took < reconnect {
		t.Errorf("the destination ended %v after the break; want it to listen for reconnect_timeout %v", took, reconnect)
	}
	wantSetupFailed(t, rep, err)
	if n := d.dst.Counters().Resumes; n != 0 {
		t.Errorf("destination resumed %d times; want never", n)
	}
}

// TestCancelWhileUncommittedFaultLoopEnded: as TestCancelWhileUncommitted,
// but the fault loop ended as the listening began (uncommitted listens
// under Receive's own context since 2026-12-08, not the receive loop's,
// which that end cut). A Cancel must still take and end the listening at
// once, not after reconnect_timeout: the destination cannot tell the
// source, which may have written COMMIT, so it ends handover-unknown
// (docs/HANDOVER.md, migrate-cancel while it waits for its source) and
// never runs the VM.
func TestCancelWhileUncommittedFaultLoopEnded(t *testing.T) {
	s, dst, rcv, opt := pcSetup(t, vmtest.Options{})
	opt.ReconnectTimeout = 10 * time.Minute // longer than the test may wait
	listening := failLoopWhileUncommitted(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cctx, c := NewCancel(context.WithoutCancel(ctx)) // only the Cancel ends Receive's context
	wait := receiveAsync(cctx, dst, rcv, opt)
	never, stale := pcPages(s)
	failed := runScript(func() {
		s.precopy(ctx, never, stale, false)
		s.tr.Close() // COMMIT, if written, lost with the connection
	})
	if failed {
		c.Cancel(errOperator)
		rep, err := wait()
		t.Fatalf("script failed; Receive: %v (%+v)", err, rep)
	}
	select {
	case <-listening:
	case <-ctx.Done():
		t.Fatal("the destination never began to listen for its source")
	}
	took, postcopy := c.Cancel(errOperator)
	if !took || postcopy {
		t.Errorf("Cancel: took %v, post-copy %v; want took", took, postcopy)
	}
	ended := make(chan struct{})
	var rep Report
	var err error
	go func() { rep, err = wait(); close(ended) }()
	select {
	case <-ended:
	case <-ctx.Done():
		t.Fatal("the Cancel did not end the listening: Receive still runs")
	}
	if !errors.Is(err, ErrHandoverUnknown) || rep.Status != StatusHandoverUnknown || dst.Counters().Resumes != 0 {
		t.Errorf("Receive: %v, status %s, resumes %d; want handover-unknown, never resumed", err, rep.Status, dst.Counters().Resumes)
	}
	if msg := fmt.Sprint(err); strings.Contains(msg, "within reconnect_timeout") || !strings.Contains(msg, "cancelled while listening") {
		t.Errorf("Receive: %v; want it to say the cancel ended the listening, not reconnect_timeout", err)
	}
}
