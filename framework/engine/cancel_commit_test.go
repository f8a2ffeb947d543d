package engine

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
)

// cancelAt migrates src to dst over the fake pipe and cancels Send's
// context as the message of kind at passes between them: from the
// source (toDst) as Send hands it to the transport, to it as the source
// reads it.
func cancelAt(t *testing.T, toDst bool, at uint32) cancelled {
	t.Helper()
	src, dst := everySeventh(t, 0x3c)
	s, r := newPipe(src, dst)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sctx, cancelSend := context.WithCancel(ctx)
	defer cancelSend()
	if toDst {
		s.p.sendErr = func(d bool, m transport.Message) error {
			switch {
			case d && m.Kind == at:
				cancelSend() // the operator's migrate-cancel, at that moment
			case !d && m.Kind == msgRunning:
				// Not a synchronisation: a destination takes a while to
				// run the vCPUs and answer; what the source makes of the
				// cancel meanwhile is what is tested.
				time.Sleep(20 * time.Millisecond)
			}
			return nil
		}
	} else {
		s.p.delivered = func(d bool, m transport.Message) {
			if !d && m.Kind == at {
				cancelSend()
			}
		}
	}
	c := cancelled{src: src, dst: dst}
	var wg sync.WaitGroup
	wg.Go(func() { c.drep, c.derr = Receive(ctx, dst, r, Options{Log: testLogger(t)}) })
	c.srep, c.serr = Send(sctx, src, s, Options{Log: testLogger(t)})
	wg.Wait()
	return c
}

// cancelled is how cancelAt's migration ended on both sides.
type cancelled struct {
	srep, drep Report
	serr, derr error
	src, dst   *fakeVM
}

// TestCancelAsCommitGoesOut: the source's caller cancels just as COMMIT
// travels. The cancel is ignored: cutting the wait for RUNNING short
// could only leave the handover unknown (the destination may run the
// guest), so the source waits for the answer, and the migration
// completes. Before, the source ended handover-unknown with its copy
// paused, and an operator had to resolve it by hand.
func TestCancelAsCommitGoesOut(t *testing.T) {
	c := cancelAt(t, true, msgCommit)
	srep, serr, drep, derr, src, dst := c.srep, c.serr, c.drep, c.derr, c.src, c.dst
	if serr != nil || srep.Status != StatusCompleted || srep.Handover != HandoverCompleted {
		t.Fatalf("Send: %v, status %s, handover %s; want completed (the cancel came after COMMIT)", serr, srep.Status, srep.Handover)
	}
	if derr != nil || drep.Status != StatusCompleted || dst.resumed != 1 || src.resumed != 0 {
		t.Fatalf("Receive: %v, %s; destination resumed %d, source resumed %d", derr, drep.Status, dst.resumed, src.resumed)
	}
}

// TestCancelAfterLoaded: the cancel comes as LOADED reaches the source,
// before it writes COMMIT. Nothing is committed yet: the source resumes
// the VM and tells the destination (ABORT), which never runs it.
func TestCancelAfterLoaded(t *testing.T) {
	c := cancelAt(t, false, msgLoaded)
	srep, serr, drep, derr, src, dst := c.srep, c.serr, c.drep, c.derr, c.src, c.dst
	if !errors.Is(serr, context.Canceled) || srep.Status != StatusCancelled || src.resumed != 1 {
		t.Fatalf("Send: %v, status %s, source resumed %d; want cancelled and resumed", serr, srep.Status, src.resumed)
	}
	if derr == nil || drep.Status != StatusFailed || dst.resumed != 0 {
		t.Fatalf("Receive: %v, %s, destination resumed %d; want failed on the source's ABORT, never run", derr, drep.Status, dst.resumed)
	}
}
