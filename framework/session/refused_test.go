package session_test

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/schema"
	"github.com/ferryvm/ferry/framework/session"
	"github.com/ferryvm/ferry/framework/transport"
)

// strangerPage is the page of guest RAM the stranger's session writes.
const strangerPage = 5

// strangerSession is a destination's in-process transport whose first
// session is a stranger's: it opens, sends no HELLO, and has one page in
// flight, which lands in guest RAM before the session's close returns
// (a transport's close joins the goroutines that write pages, as tcp's
// does), and which Stats then counts, as Stats after a close reports the
// closed session. A later Open is reported on again and waits for its
// context. Every other call fails (transport.Mock).
type strangerSession struct {
	transport.Mock
	mem []byte // the destination's guest RAM (fakeVM.mem)

	mu     sync.Mutex
	open   bool
	landed bool          // the page in flight was written
	ended  chan struct{} // closed when the session ends
	again  chan struct{} // closed at the second Open
}

func newStrangerSession(mem []byte) *strangerSession {
	return &strangerSession{mem: mem, ended: make(chan struct{}), again: make(chan struct{})}
}

func (s *strangerSession) Schema(context.Context) (schema.Schema, error) { return nil, nil }

func (s *strangerSession) Open(ctx context.Context, _ transport.OpenRequest) error {
	s.mu.Lock()
	first := !s.open && !s.landed
	s.open = first
	s.mu.Unlock()
	if first {
		return nil
	}
	select {
	case <-s.again:
	default:
		close(s.again)
	}
	<-ctx.Done()
	return ctx.Err()
}

// RecvMessage: the stranger sends nothing; it returns once the session
// ended or ctx did.
func (s *strangerSession) RecvMessage(ctx context.Context) (transport.Message, error) {
	select {
	case <-ctx.Done():
		return transport.Message{}, ctx.Err()
	case <-s.ended:
		return transport.Message{}, transport.ErrClosed
	}
}

// SendMessage takes the destination's ABORT.
func (s *strangerSession) SendMessage(context.Context, transport.Message) error { return nil }

func (s *strangerSession) Stats(context.Context) (transport.Stats, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.landed {
		return transport.Stats{PagesData: 1, BytesWire: page}, nil
	}
	return transport.Stats{}, nil
}

// CloseHoldingListeners implements transport.ListenerHolder: the
// session ends, its page in flight landing first.
func (s *strangerSession) CloseHoldingListeners() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.open {
		s.open, s.landed = false, true
		s.mem[strangerPage*page] = 0x5a
		close(s.ended)
	}
	return nil
}

func (s *strangerSession) Close() error { return s.CloseHoldingListeners() }

// TestRefusedSessionEndedBeforeChecked: a destination waiting for its
// source closes a session that sent no HELLO and waits on only if that
// session wrote nothing into guest RAM, which it can know only of a
// session that ended: here one page was still in flight, and lands as
// the session ends. Under the session package the destination must not
// wait on for its source with that page in guest RAM, unchecked. Until
// 2026-12-07 the session's transport ignored the engine's close and
// ended the session only at the next Open: the destination checked the
// session's counts and RAM while it still ran, found them clean, and
// opened again for its source with the stranger's page in its RAM (a
// page its source may skip as never populated, so that the guest would
// run with it).
func TestRefusedSessionEndedBeforeChecked(t *testing.T) {
	dst := newFakeVM(t)
	tr := newStrangerSession(dst.mem)
	spec := session.Spec{Role: transport.RoleReceive, TransportInProcess: tr, Log: slog.New(newRecords()),
		Engine: engine.Options{SwitchoverTimeout: 200 * time.Millisecond, IncomingTimeout: 20 * time.Second}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out := make(chan result, 1)
	go func() {
		rep, err := session.Receive(ctx, dst, spec)
		out <- result{rep, err}
	}()
	var r result
	select {
	case r = <-out:
	case <-tr.again:
		tr.mu.Lock()
		landed := tr.landed
		tr.mu.Unlock()
		cancel()
		<-out
		t.Fatalf("the destination opened again for its source after closing the stranger's session (page %d written: %v): "+
			"it checked that session before it ended", strangerPage, landed)
	case <-ctx.Done():
		t.Fatal("the destination neither failed nor opened again")
	}
	if dst.mem[strangerPage*page] != 0x5a {
		t.Fatal("the stranger's page never landed: the test proves nothing")
	}
	if r.err == nil || !strings.Contains(r.err.Error(), "silent session") || r.rep.Status != engine.StatusFailed {
		t.Fatalf("the destination ended %s (%v), want failed on the silent session", r.rep.Status, r.err)
	}
}

// strangerTransport is strangerPlugin's binary (plugins, main_test.go).
const strangerTransport = "ferry-transport-stranger"

// strangerPlugin is strangerSession as a transport plugin: its session
// opens, sends nothing, and writes one page of guest RAM into its file
// as its Close returns (a page in flight that the close finishes),
// which its Stats then count. The launched transport runs each session
// in a new process, so every session it opens is such a stranger.
func strangerPlugin() transport.Transport {
	var mu sync.Mutex
	var req transport.OpenRequest
	var pages uint64
	ended := make(chan struct{})
	return &transport.Mock{
		SchemaFunc: func(context.Context) (schema.Schema, error) { return nil, nil },
		OpenFunc: func(_ context.Context, r transport.OpenRequest) error {
			mu.Lock()
			defer mu.Unlock()
			req = r
			return nil
		},
		RecvMessageFunc: func(ctx context.Context) (transport.Message, error) {
			select {
			case <-ctx.Done():
				return transport.Message{}, ctx.Err()
			case <-ended:
				return transport.Message{}, transport.ErrClosed
			}
		},
		SendMessageFunc: func(context.Context, transport.Message) error { return nil },
		StatsFunc: func(context.Context) (transport.Stats, error) {
			mu.Lock()
			defer mu.Unlock()
			return transport.Stats{PagesData: pages, BytesWire: pages * page}, nil
		},
		CloseFunc: func() error {
			mu.Lock()
			defer mu.Unlock()
			if req.Files == nil || pages > 0 {
				return nil
			}
			r := req.RAM[0]
			if _, err := req.Files[r.File].WriteAt([]byte{0x5a}, int64(r.Offset)+strangerPage*page); err != nil {
				return err
			}
			pages = 1
			close(ended)
			return nil
		},
	}
}

// TestRefusedPluginSessionCountsItsClose is
// TestRefusedSessionEndedBeforeChecked through a launched plugin, into
// a destination whose guest RAM held data before Receive (a VMM that
// wrote it), so that only the session's counts can tell the destination
// that the stranger wrote a page: the plugin writes it as its Close
// returns. The destination must fail on that session, not open again
// for its source. Until 2026-12-07 the launched transport took the
// plugin's Stats before its Close: the destination saw no page written
// and opened again (for another stranger here: it failed later, on the
// migration stream's deadline, with the page in guest RAM).
func TestRefusedPluginSessionCountsItsClose(t *testing.T) {
	dst := newFakeVM(t)
	dst.fill()
	spec := session.Spec{Role: transport.RoleReceive, Transport: session.Plugin{Path: plugin(strangerTransport)},
		Log:    slog.New(newRecords()),
		Engine: engine.Options{SwitchoverTimeout: 200 * time.Millisecond, IncomingTimeout: 20 * time.Second}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := session.Receive(ctx, dst, spec)
	if dst.mem[strangerPage*page] != 0x5a {
		t.Fatalf("the stranger's page never landed (%v): the test proves nothing", err)
	}
	if err == nil || !strings.Contains(err.Error(), "silent session") || rep.Status != engine.StatusFailed {
		t.Fatalf("the destination ended %s (%v), want failed on the silent session: it did not see the page "+
			"the refused session's close wrote", rep.Status, err)
	}
}
