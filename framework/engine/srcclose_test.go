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

// sendHoldRecorder is a source's transport that is a
// transport.ListenerHolder, as tcp's, rdma's and a launched plugin's
// are, and as framework/session's wrapper is, whose Close leaves the
// real close to the session's teardown. It records how the engine ends
// its sessions, "open", "hold" (CloseHoldingListeners) and "close"
// (Close), and refuses the first push after COMMIT with the session up,
// so that the source gives that session up and reconnects; with
// noResume, it refuses every RESUME too (the first message of each
// session after the first), so that the source never gets a session
// back. With failOpen n, its nth Open fails and leaves what a failed
// Open may leave behind (a launched plugin's side of an Open the host
// gave up on may still run, and succeed, after the host's call
// returned): every later Open fails, as tcp's and rdma's do beside an
// open session, until Close or CloseHoldingListeners clears it.
type sendHoldRecorder struct {
	afterCommit
	noResume bool
	failOpen int

	mu      sync.Mutex
	opens   int
	stale   bool // the failed Open's leftovers, until a close
	refused bool
	calls   []string
}

var _ transport.ListenerHolder = (*sendHoldRecorder)(nil)

func (h *sendHoldRecorder) Open(ctx context.Context, req transport.OpenRequest) error {
	h.mu.Lock()
	h.opens++
	h.calls = append(h.calls, "open")
	fail, stale := h.opens == h.failOpen, h.stale
	h.stale = h.stale || fail
	h.mu.Unlock()
	switch {
	case fail:
		return errors.New("injected: Open failed, leaving its state for Close")
	case stale:
		return errors.New("injected: a failed Open's state is still here; Close it first")
	}
	return h.Transport.Open(ctx, req)
}

// closed clears what a failed Open left (failOpen).
func (h *sendHoldRecorder) closed(call string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = append(h.calls, call)
	h.stale = false
}

func (h *sendHoldRecorder) SendMessage(ctx context.Context, m transport.Message) error {
	h.mu.Lock()
	refuse := h.noResume && m.Kind == msgResume && h.opens > 1
	h.mu.Unlock()
	if refuse {
		return errors.New("injected: RESUME refused, the session goes on")
	}
	return h.afterCommit.SendMessage(ctx, m)
}

func (h *sendHoldRecorder) Close() error {
	h.closed("close")
	return h.Transport.Close()
}

func (h *sendHoldRecorder) CloseHoldingListeners() error {
	h.closed("hold")
	return h.Transport.Close()
}

func (h *sendHoldRecorder) SendPages(ctx context.Context, runs []transport.PageRun) error {
	if err := h.dirtyOnce(); err != nil {
		return err
	}
	h.mu.Lock()
	refuse := h.committed.Load() && !h.refused
	h.refused = h.refused || refuse
	h.mu.Unlock()
	if refuse {
		return errors.New("injected: push refused, the session goes on")
	}
	return h.sendPages(ctx, runs)
}

// TestPostcopySendReconnectEndsSession: a source that gives its
// post-copy session up ends it through transport.CloseHolding before it
// opens another, and calls Close once, at the end. A transport's
// CloseHoldingListeners ends the session as Close does (a sending one
// holds no listening sockets), and framework/session's wrapper forwards
// it at once while its Close only marks the session for the teardown:
// until 2026-12-07 the source called Close at each reconnect ("close",
// "open", "close"), and under framework/session the session it gave up
// on stayed connected through the backoff until the next Open
// (TestEmbedPostcopySourceEndsSessionGivenUp).
func TestPostcopySendReconnectEndsSession(t *testing.T) {
	h := &sendHoldRecorder{}
	var src *vmtest.VM
	r, dst := bothEnginesOn(t, func(str transport.Transport, v *vmtest.VM) transport.Transport {
		h.Transport, h.src, src = str, v, v
		return h
	}, func(sopt, dopt *Options) {
		sopt.StallTimeout, dopt.StallTimeout = 2*time.Minute, 2*time.Minute
	})
	h.mu.Lock()
	refused, calls := h.refused, slices.Clone(h.calls)
	h.mu.Unlock()
	if !refused {
		t.Fatalf("no push after COMMIT: the test proves nothing; source %s (%v)", r.srep.Status, r.serr)
	}
	completedAfter(t, r, src, dst, 1, "the refused push's session given up")
	if want := []string{"open", "hold", "open", "close"}; !slices.Equal(calls, want) {
		t.Errorf("the source opened and closed its transport %v, want %v: the session given up ended "+
			"with CloseHoldingListeners, Close once at the end", calls, want)
	}
}

// TestPostcopySendBrokenClosesAtEnd: a source whose reconnect never gets
// a session back (every RESUME refused, its session given up with
// CloseHolding) still calls its transport's Close at the end, which
// lets go of what CloseHolding kept (trHeld): with CloseHolding at the
// reconnects alone, the last close finds no session, and a mutant that
// closed nothing then failed here ([open hold open hold ... hold]).
func TestPostcopySendBrokenClosesAtEnd(t *testing.T) {
	h := &sendHoldRecorder{noResume: true}
	r, _ := bothEnginesOn(t, func(str transport.Transport, v *vmtest.VM) transport.Transport {
		h.Transport, h.src = str, v
		return h
	}, func(sopt, dopt *Options) {
		sopt.StallTimeout, dopt.StallTimeout = 2*time.Minute, 2*time.Minute
		sopt.ReconnectTimeout, dopt.ReconnectTimeout = 300*time.Millisecond, 300*time.Millisecond
	})
	h.mu.Lock()
	refused, calls := h.refused, slices.Clone(h.calls)
	h.mu.Unlock()
	if !refused || !errors.Is(r.serr, ErrPostcopyBroken) {
		t.Fatalf("push refused %v; source %s (%v), want post-copy broken: the test proves nothing", refused, r.srep.Status, r.serr)
	}
	t.Logf("calls: %v", calls)
	last := len(calls) - 1
	// The last try's Open may itself fail within reconnect_timeout (a
	// loaded host: the loopback handshake's deadline), leaving "open"
	// before the final close rather than "hold": both are right.
	if last < 3 || calls[last] != "close" || slices.Contains(calls[:last], "close") || calls[1] != "hold" {
		t.Errorf("the source opened and closed its transport %v, want each session given up with CloseHoldingListeners "+
			"and Close once at the end", calls)
	}
}

// TestPostcopySendClosesAfterFailedOpen: a post-copy source whose
// reconnect's Open fails closes the transport (transport.CloseHolding)
// before its next try, as the transport contract asks of the caller of
// an Open that failed and as the destination does
// (receiver.closeSession), and completes on the try after. Until
// 2026-12-07 it sent the next Open to a transport that still held the
// failed one's state (a launched plugin's process, whose side of an
// Open the host gave up on may still run, and succeed, and then refuse
// every Open beside it): every later try failed until reconnect_timeout
// and post-copy broke.
func TestPostcopySendClosesAfterFailedOpen(t *testing.T) {
	h := &sendHoldRecorder{failOpen: 2}
	var src *vmtest.VM
	r, dst := bothEnginesOn(t, func(str transport.Transport, v *vmtest.VM) transport.Transport {
		h.Transport, h.src, src = str, v, v
		return h
	}, func(sopt, dopt *Options) {
		sopt.StallTimeout, dopt.StallTimeout = 2*time.Minute, 2*time.Minute
		sopt.ReconnectTimeout, dopt.ReconnectTimeout = 10*time.Second, 10*time.Second
	})
	h.mu.Lock()
	refused, calls := h.refused, slices.Clone(h.calls)
	h.mu.Unlock()
	if !refused {
		t.Fatalf("no push after COMMIT: the test proves nothing; source %s (%v)", r.srep.Status, r.serr)
	}
	completedAfter(t, r, src, dst, 1, "the refused push's session given up, then a failed Open")
	if want := []string{"open", "hold", "open", "hold", "open", "close"}; !slices.Equal(calls, want) {
		t.Errorf("the source opened and closed its transport %v, want %v: the failed Open closed with "+
			"CloseHoldingListeners before the next, Close once at the end", calls, want)
	}
}
