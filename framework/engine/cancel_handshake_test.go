package engine

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/vmtest"
)

// holdReady is a destination's transport that holds READY back: its
// send waits until release is closed (or its context ends); holding is
// closed as it begins to wait.
type holdReady struct {
	transport.Transport
	holding, release chan struct{}
}

func (h *holdReady) SendMessage(ctx context.Context, m transport.Message) error {
	if m.Kind == msgReady {
		close(h.holding)
		select {
		case <-h.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return h.Transport.SendMessage(ctx, m)
}

// lateClose is a source's transport whose Close does not reach the
// destination until the test ends (a session's teardown closes the
// plugin only after the report; a close whose last bytes are lost):
// only what the engine sends tells the destination anything.
type lateClose struct{ transport.Transport }

func (lateClose) Close() error { return nil }

// TestHandshakeCancelAborts: a source cancelled during the handshake,
// HELLO out and READY not back yet (the destination holds it), tells
// the destination (ABORT), which ends at once, never having run the VM,
// instead of waiting for its stall bound (10 s here). Before, the
// source's ABORT was armed only after READY.
func TestHandshakeCancelAborts(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	src, dst, sendTr, recvTr, sc, dc := pipeGuests(t)
	t.Cleanup(func() { sendTr.Close() })
	hold := &holdReady{Transport: recvTr, holding: make(chan struct{}), release: make(chan struct{})}
	const bound = 10 * time.Second
	wait := receiveAsync(ctx, dst, hold, Options{Credentials: dc, StallTimeout: bound, SwitchoverTimeout: bound, Log: testLogger(t)})
	sctx, scancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-hold.holding: // HELLO arrived, READY is held
			scancel()
		case <-ctx.Done():
		}
	}()
	srep, serr := Send(sctx, src, lateClose{sendTr}, Options{Credentials: sc, Log: testLogger(t)})
	close(hold.release) // READY goes out now, to a source that returned
	released := time.Now()
	drep, derr := wait()
	took := time.Since(released)
	t.Logf("source %s: %v\ndestination %s after %v: %v", srep.Status, serr, drep.Status, took.Round(time.Millisecond), derr)
	if srep.Status != StatusCancelled || src.State() != vmtest.StateRunning {
		t.Errorf("source %s, VM %v; want cancelled, running", srep.Status, src.State())
	}
	if derr == nil || !strings.Contains(derr.Error(), "source aborted") || drep.Status != StatusFailed ||
		drep.Handover != HandoverFailed || dst.State() == vmtest.StateRunning {
		t.Errorf("destination %s, handover %s, VM %v: %v; want failed on the source's ABORT, never run",
			drep.Status, drep.Handover, dst.State(), derr)
	}
	if took > bound/2 {
		t.Errorf("the destination ended %v after READY went out: it waited for its stall bound (%v)", took, bound)
	}
}
