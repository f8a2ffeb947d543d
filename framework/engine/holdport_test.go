package engine

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/vmtest"
)

// holdRecorder is a receiving transport that holds a listening port
// (transport.ListenerHolder) and records how the engine opens and closes
// it: "open", "hold" (CloseHoldingListeners) and "close" (Close, which
// lets the port go).
type holdRecorder struct {
	transport.Transport
	mu    sync.Mutex
	calls []string
}

var _ transport.ListenerHolder = (*holdRecorder)(nil)

func (h *holdRecorder) note(call string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = append(h.calls, call)
}

func (h *holdRecorder) Open(ctx context.Context, req transport.OpenRequest) error {
	h.note("open")
	return h.Transport.Open(ctx, req)
}

func (h *holdRecorder) Close() error {
	h.note("close")
	return h.Transport.Close()
}

func (h *holdRecorder) CloseHoldingListeners() error {
	h.note("hold")
	return h.Transport.Close()
}

// TestPostcopyRecvReconnectHoldsPort: a destination whose post-copy
// connection broke closes its transport and opens it again for the
// source's RESUME. A transport that holds its listening port
// (transport.ListenerHolder, as tcp and rdma in process) must be closed
// with CloseHoldingListeners in between, so no one else on the host can
// take the port meanwhile, and with Close only at the end. Before, the
// engine called Close at every reconnect: only framework/session's
// wrapper held the port, and a transport given to the engine directly
// let it go.
func TestPostcopyRecvReconnectHoldsPort(t *testing.T) {
	s, dst, rcv, opt := pcSetup(t, vmtest.Options{WriteEvery: time.Millisecond, WriteBatch: 4})
	opt.ReconnectTimeout = 300 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h := &holdRecorder{Transport: rcv}
	wait := receiveAsync(ctx, dst, h, opt)
	never, stale := pcPages(s)
	failed := runScript(func() {
		s.precopy(ctx, never, stale, false)
		s.send(ctx, msgCommit, nil)
		s.recv(ctx, msgRunning)
		s.tr.Close() // and never comes back
	})
	_, err := wait()
	if failed || !errors.Is(err, ErrPostcopyBroken) {
		t.Fatalf("script failed %v; Receive: %v", failed, err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	last := len(h.calls) - 1
	if last < 2 || h.calls[last] != "close" || slices.Contains(h.calls[:last], "close") || !slices.Contains(h.calls, "hold") {
		t.Fatalf("the engine opened and closed the transport %v; want CloseHoldingListeners before each reopen, Close once at the end", h.calls)
	}
}
