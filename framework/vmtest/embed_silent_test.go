package vmtest_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/session"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/transports/tcp"
)

// silentTry is the source's TCP transport (in process): once RUNNING
// arrived it cuts the session, and its first reconnect opens a session
// of its own first (same request: this migration's credentials and tag)
// that says nothing, as a try whose connection died right after the
// handshake would. Only once the destination closed that one does the
// source's own Open go ahead.
type silentTry struct {
	transport.Transport

	mu     sync.Mutex
	cut    bool
	opened int
	// What became of the silent session: the destination closed it
	// (closed) after held.
	closed bool
	held   time.Duration
	err    error
}

func (s *silentTry) Open(ctx context.Context, req transport.OpenRequest) error {
	s.mu.Lock()
	s.opened++
	again := s.opened == 2
	s.mu.Unlock()
	if again {
		s.silent(ctx, req)
	}
	return s.Transport.Open(ctx, req)
}

// silent opens another session with req, says nothing, and waits (at
// most 30 s) for the destination to close it.
func (s *silentTry) silent(ctx context.Context, req transport.OpenRequest) {
	tr := tcp.New(nil)
	defer tr.Close()
	if err := tr.Open(ctx, req); err != nil {
		s.err = err
		return
	}
	opened := time.Now()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, err := tr.RecvMessage(wctx)
	s.closed, s.held, s.err = err != nil && wctx.Err() == nil, time.Since(opened), err
}

func (s *silentTry) RecvMessage(ctx context.Context) (transport.Message, error) {
	m, err := s.Transport.RecvMessage(ctx)
	if err == nil && m.Kind == engine.MsgRunning {
		s.mu.Lock()
		first := !s.cut
		s.cut = true
		s.mu.Unlock()
		if first {
			s.Transport.Close() // the network breaks
		}
	}
	return m, err
}

// TestEmbedSilentReconnect: post-copy over the real TCP transport (in
// process, real sockets, real userfaultfd) breaks after RUNNING. The
// source's first try to reconnect opens a session and says nothing (its
// connection died after the transport's handshake). The destination,
// which runs the guest on the pages it holds, closes that session after
// switchover_timeout and takes the source's next try: the migration
// completes page-exact (manualSwitch's checks). Before 2026-12-06 the
// destination waited on the silent session until reconnect_timeout, then
// halted the guest.
func TestEmbedSilentReconnect(t *testing.T) {
	st := &silentTry{Transport: tcp.New(nil)}
	manualSwitchVMs(t, func(sspec, dspec *session.Spec) {
		sspec.TransportInProcess, dspec.TransportInProcess = st, tcp.New(nil)
		sspec.Transport.Path, dspec.Transport.Path = "", ""
		dspec.Engine.SwitchoverTimeout = 2 * time.Second
		dspec.Engine.ReconnectTimeout = 2 * time.Minute
	})
	if st.opened < 2 {
		t.Fatalf("the source opened its transport %d times; the test needs a reconnect", st.opened)
	}
	if !st.closed {
		t.Fatalf("the destination did not close the silent session within 30 s (%v)", st.err)
	}
	t.Logf("the silent session was closed after %v: %v", st.held.Round(time.Millisecond), st.err)
}
