package engine

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
)

// cancelAtCommit is the destination's transport whose caller cancels
// Receive (cancel) as COMMIT is handed over: the receive loop takes the
// COMMIT it read under a context that ended a moment later, as a
// migrate-cancel or a Ctrl-C racing the source's COMMIT does. Like a
// launched plugin (its gRPC call), and unlike loopback, which may still
// write, it sends nothing under a context that ended.
type cancelAtCommit struct {
	transport.Transport
	cancel context.CancelFunc
	fired  bool
}

// RecvMessage implements transport.Transport.RecvMessage.
func (c *cancelAtCommit) RecvMessage(ctx context.Context) (transport.Message, error) {
	m, err := c.Transport.RecvMessage(ctx)
	if err != nil || m.Kind != msgCommit || c.fired {
		return m, err
	}
	c.fired = true
	c.cancel()
	// The engine's context follows its caller's on a goroutine of its own
	// (heldCtx): the COMMIT goes on once it ended.
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
	}
	return m, nil
}

// SendMessage implements transport.Transport.SendMessage.
func (c *cancelAtCommit) SendMessage(ctx context.Context, m transport.Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return c.Transport.SendMessage(ctx, m)
}

// TestPostcopyRefusedCommitCancelledStillAborts: a post-copy destination
// refuses a COMMIT (promised check, no HASHES) that it read as its
// caller cancelled Receive. It never runs the VM and must still answer
// ABORT, as giveUp does whatever the cancel (and as a pre-copy
// destination does): the source resumes its VM on that ABORT. Before,
// the refusal's ABORT (pcRecv.refuseCommit, tellAborted) went out under
// the cancelled context and was never written; the source, answered
// nothing, waits out switchover_timeout and reconnects to nobody for its
// reconnect_timeout, then ends handover-unknown, its copy paused.
func TestPostcopyRefusedCommitCancelledStillAborts(t *testing.T) {
	d := pcReceive(t, pcDestCase{check: true, bound: 20 * time.Second, cancelAtCommit: true})
	s, ctx := d.s, d.ctx
	var answer transport.Message
	var aerr error
	failed := runScript(func() {
		s.precopyThenCommit(ctx, d.never, d.stale)
		actx, acancel := context.WithTimeout(ctx, 5*time.Second)
		defer acancel()
		answer, aerr = s.tr.RecvMessage(actx)
		if aerr == nil && answer.Kind == msgAbort {
			// Heard (sender.commit). The cancelled destination does not
			// wait for this answer (tellAborted's waits end with the
			// cancel) and may have closed the session already: a send
			// that fails is no failure of the test.
			_ = s.tr.SendMessage(ctx, transport.Message{Kind: msgAbort})
		}
	})
	_, err := d.wait()
	if failed {
		t.Fatalf("script failed; Receive: %v", err)
	}
	t.Logf("destination: %v; answered %s %q (%v)", err, msgName(answer.Kind), answer.Payload, aerr)
	if !errors.Is(err, errCommitRefused) {
		t.Errorf("Receive: %v; want COMMIT refused", err)
	}
	wantNeverResumed(t, d.dst)
	if aerr != nil || answer.Kind != msgAbort || !strings.Contains(string(answer.Payload), "COMMIT refused") {
		t.Errorf("COMMIT answered %s %q (%v); want the ABORT that says it was refused, cancel or not",
			msgName(answer.Kind), answer.Payload, aerr)
	}
}
