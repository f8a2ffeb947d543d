package rdma_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/wire"
	"github.com/ferryvm/ferry/transports/rdma"
)

// valve is a control channel that stops taking bytes, as a link that
// stops (or a peer that stops reading, once the socket buffers are
// full) does, from the first write that shut matches on: that write
// and every later one wait until the write deadline passes (then fail
// as the socket would) or the valve opens.
type valve struct {
	net.Conn
	shut func([]byte) bool
	keep int // bytes of the write shut matched that go out before it is held (a write that stops inside a frame)
	// reopen: once the held write gave up at its deadline, the valve
	// opens (a link that takes bytes again after a write was cut).
	reopen bool
	held   chan struct{} // closed as the first write is held

	mu       sync.Mutex
	closed   bool
	opened   bool // by open: it shuts no more
	deadline time.Time
	changed  chan struct{} // closed and replaced when the deadline or the valve changes
}

func newValve(shut func([]byte) bool) *valve {
	return &valve{shut: shut, held: make(chan struct{}), changed: make(chan struct{})}
}

func (v *valve) wrap(c net.Conn) net.Conn { v.Conn = c; return v }

func (v *valve) Write(b []byte) (int, error) {
	v.mu.Lock()
	sent := 0
	if !v.closed && !v.opened && v.shut(b) {
		if v.keep > 0 {
			n, err := v.Conn.Write(b[:min(v.keep, len(b))])
			if err != nil {
				v.mu.Unlock()
				return n, err
			}
			sent, b = n, b[n:]
		}
		v.closed = true
		close(v.held)
	}
	for v.closed {
		d, changed := v.deadline, v.changed
		if !d.IsZero() && !time.Now().Before(d) {
			if v.reopen {
				v.closed, v.opened = false, true
			}
			v.mu.Unlock()
			return sent, os.ErrDeadlineExceeded
		}
		v.mu.Unlock()
		var passed <-chan time.Time
		if !d.IsZero() {
			timer := time.NewTimer(time.Until(d))
			defer timer.Stop()
			passed = timer.C
		}
		select {
		case <-changed:
		case <-passed:
		}
		v.mu.Lock()
	}
	v.mu.Unlock()
	n, err := v.Conn.Write(b)
	return sent + n, err
}

// waitDeadline waits until a write deadline is set on the valve (not
// cleared), or ctx ends.
func (v *valve) waitDeadline(ctx context.Context) error {
	for {
		v.mu.Lock()
		d, changed := v.deadline, v.changed
		v.mu.Unlock()
		if !d.IsZero() {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// open lets the held writes and every later one through, for good.
func (v *valve) open() {
	v.mu.Lock()
	v.closed, v.opened = false, true
	close(v.changed)
	v.changed = make(chan struct{})
	v.mu.Unlock()
}

// SetWriteDeadline sets the connection's deadline before it wakes a
// held write: a writer that then clears it (writeOn, after its context
// ended) must not be overtaken by this call's setting it.
func (v *valve) SetWriteDeadline(d time.Time) error {
	err := v.Conn.SetWriteDeadline(d)
	v.mu.Lock()
	v.deadline = d
	close(v.changed)
	v.changed = make(chan struct{})
	v.mu.Unlock()
	return err
}

func (v *valve) SetDeadline(d time.Time) error {
	v.SetWriteDeadline(d)
	return v.Conn.SetDeadline(d)
}

// isAck reports whether b is an ACK frame.
func isAck(b []byte) bool {
	f, err := wire.NewDecoder(bytes.NewReader(b)).Next()
	return err == nil && f.Type == wire.TypeAck
}

// isProgress reports whether b is a PROGRESS frame.
func isProgress(b []byte) bool {
	f, err := wire.NewDecoder(bytes.NewReader(b)).Next()
	return err == nil && f.Type == wire.TypeMsg && f.Seq != 0 && f.Kind == rdma.ProgressKind
}

// TestMessageNotHeldBehindProgress: a call that writes on the control
// channel returns when its context ends, also while the source's
// PROGRESS reporter, which writes under no context of the engine's, is
// held in a write (transport.Transport: every call that blocks honours
// its context). Before, the reporter held the channel's lock for as long
// as its write took: behind a link that stopped, SendMessage (and
// SendPages' ZERO and RUNS frames) waited on that lock past their
// contexts until the session ended, so the engine's stall watch could
// not end a pass, nor its ABORT's 2 s bound the ABORT, and nothing
// closed the session.
func TestMessageNotHeldBehindProgress(t *testing.T) {
	p := providers(t)[0]
	v := newValve(isProgress)
	send := rdma.New(nil)
	send.SetControlWrap(v.wrap)
	s := open(t, p, 0, 16<<20, send)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	fillRandom(s.src, 4)
	if err := s.send.SendPages(ctx, []transport.PageRun{{First: 0, Count: 1024, Kind: transport.KindData}}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-v.held:
	case <-time.After(10 * time.Second):
		t.Fatal("no PROGRESS written within 10 s of a 4 MiB SendPages")
	}
	const bound = 300 * time.Millisecond
	mctx, mcancel := context.WithTimeout(ctx, bound)
	defer mcancel()
	errc := make(chan error, 1)
	at := time.Now()
	go func() {
		errc <- s.send.SendMessage(mctx, transport.Message{Kind: 1, Payload: []byte("behind PROGRESS")})
	}()
	select {
	case err := <-errc:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("SendMessage: %v; want its context's deadline", err)
		}
		t.Logf("SendMessage returned %v after %v", err, time.Since(at).Round(time.Millisecond))
	case <-time.After(5 * time.Second):
		t.Errorf("SendMessage under a %v context still waits after 5 s while the PROGRESS reporter's write is held", bound)
		s.send.Close()
		t.Logf("after Close: %v", <-errc)
	}
}

// cutAfter is a control channel whose write of payload goes out whole
// and then, before it returns, has its caller's context end (cancel)
// and waits (at most 10 s) for the past write deadline that sets.
type cutAfter struct {
	net.Conn
	payload []byte
	cancel  func()
	once    sync.Once
	cut     chan struct{} // closed once a past write deadline was set
}

func (c *cutAfter) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if err == nil && bytes.Equal(b, c.payload) {
		c.cancel()
		select {
		case <-c.cut:
		case <-time.After(10 * time.Second):
		}
	}
	return n, err
}

func (c *cutAfter) SetWriteDeadline(d time.Time) error {
	err := c.Conn.SetWriteDeadline(d)
	if !d.IsZero() && d.Before(time.Now()) {
		c.once.Do(func() { close(c.cut) })
	}
	return err
}

// TestWriteCutAfterItWent: a call whose context ends just as its frame
// went out whole (the context's cut comes after the write, before the
// call looks) succeeds, and leaves the channel usable: the next call's
// frame goes too. Before, writeOn cleared the cut's past deadline only
// after a write that sent nothing: this one left it on the channel, the
// next write failed at once ('i/o timeout') and the session with it.
func TestWriteCutAfterItWent(t *testing.T) {
	p := providers(t)[0]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	payload := []byte("the whole frame went before its context ended")
	mctx, mcancel := context.WithCancel(ctx)
	defer mcancel()
	c := &cutAfter{payload: payload, cancel: mcancel, cut: make(chan struct{})}
	send := rdma.New(nil)
	send.SetControlWrap(func(conn net.Conn) net.Conn { c.Conn = conn; return c })
	s := open(t, p, 0, 1<<20, send)
	if err := s.send.SendMessage(mctx, transport.Message{Kind: 1, Payload: payload}); err != nil {
		t.Fatalf("SendMessage whose frame went whole: %v", err)
	}
	if err := s.send.SendMessage(ctx, transport.Message{Kind: 2, Payload: []byte("next")}); err != nil {
		t.Fatalf("the next SendMessage: %v", err)
	}
	for kind := uint32(1); kind <= 2; kind++ {
		m, err := s.recv.RecvMessage(ctx)
		if err != nil || m.Kind != kind {
			t.Fatalf("the destination's message %d: kind %d, %v", kind, m.Kind, err)
		}
	}
}
