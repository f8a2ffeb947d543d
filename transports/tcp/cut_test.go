//go:build linux

package tcp

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/wire"
)

// valve stands between a source stream's socket and what writes its
// frames (Transport.wrapRaw: TLS, or the frames themselves in
// plaintext). Armed, it holds the first write shut matches, after
// letting keep bytes of it through, as a peer that stopped reading
// would, until a write deadline passes; every other write, and every
// write after that one, goes through, unless stuck: then every write
// after it is held too, until a write deadline passes.
type valve struct {
	net.Conn
	shut  func([]byte) bool
	keep  int
	stuck bool
	armed atomic.Bool
	held  chan struct{} // closed once a write is held
	shot  atomic.Bool   // a write was held

	mu       sync.Mutex
	deadline time.Time
	changed  chan struct{} // closed and replaced when the deadline changes
}

func newValve(shut func([]byte) bool) *valve {
	return &valve{shut: shut, held: make(chan struct{}), changed: make(chan struct{})}
}

// on wraps the socket of stream idx (Transport.wrapRaw) in v.
func (v *valve) on(idx int) func(int, net.Conn) net.Conn {
	return func(i int, c net.Conn) net.Conn {
		if i != idx {
			return c
		}
		v.Conn = c
		return v
	}
}

func (v *valve) Write(b []byte) (int, error) {
	if v.stuck && v.shot.Load() {
		return v.hold(0)
	}
	if !v.armed.Load() || !v.shut(b) || !v.armed.CompareAndSwap(true, false) {
		return v.Conn.Write(b)
	}
	sent := 0
	if v.keep > 0 {
		n, err := v.Conn.Write(b[:min(v.keep, len(b))])
		if err != nil {
			return n, err
		}
		sent = n
	}
	v.shot.Store(true)
	close(v.held)
	return v.hold(sent)
}

// hold returns, with sent bytes written, once a write deadline passed.
func (v *valve) hold(sent int) (int, error) {
	for {
		v.mu.Lock()
		d, changed := v.deadline, v.changed
		v.mu.Unlock()
		if !d.IsZero() && !time.Now().Before(d) {
			return sent, os.ErrDeadlineExceeded
		}
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
	}
}

func (v *valve) SetWriteDeadline(d time.Time) error {
	err := v.Conn.SetWriteDeadline(d)
	v.mu.Lock()
	v.deadline = d
	close(v.changed)
	v.changed = make(chan struct{})
	v.mu.Unlock()
	return err
}

// waitDeadline waits until a write deadline is set (not cleared), or
// ctx ends.
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

func (v *valve) SetDeadline(d time.Time) error {
	v.Conn.SetReadDeadline(d)
	return v.SetWriteDeadline(d)
}

// cutPath is SendMessage on stream 0 or SendUrgent on the urgent
// stream, and its receiver.
type cutPath struct {
	name   string
	stream func(streams int) int
	send   func(tr *Transport, ctx context.Context, m transport.Message) error
	recv   func(tr *Transport, ctx context.Context) (transport.Message, error)
}

var cutPaths = []cutPath{
	{"message", func(int) int { return 0 }, (*Transport).SendMessage, (*Transport).RecvMessage},
	{"urgent", func(n int) int { return n }, (*Transport).SendUrgent, (*Transport).RecvUrgent},
}

// TestCutTLSWriteSaysWhy: a SendMessage (stream 0) or SendUrgent (the
// urgent stream) whose context ends while its write waits for the
// socket, before any of the frame's bytes counted as written, returns
// its context's end; then either the session goes on (plaintext: the
// next message arrives) or, when it cannot, it fails at once saying
// what cut it, and the destination hears it in an ABORT on the other
// streams. Over TLS it cannot go on: crypto/tls refuses every write
// after one a deadline cut, and counts none of a record cut half-way
// ("torn record": the first bytes of it went). Before, a TLS session
// went on as if nothing had happened; its next write on the stream
// failed it with "stream 0: connection lost (send message: write ...:
// i/o timeout): transport session closed by the peer", naming neither
// the context nor TLS, and of class ErrClosed. A cut inside the frame's
// second record (its first went whole: "second record") fails the
// session the same way, its text naming the bytes that counted and
// TLS's rules; until 2026-12-08 it named the context but not TLS, nor
// that the peer may have read more than the count (a record cut
// half-way counts none).
func TestCutTLSWriteSaysWhy(t *testing.T) {
	const streams = 2
	for _, path := range cutPaths {
		for _, c := range []struct {
			name   string
			plain  bool
			keep   int
			second bool // cut inside the frame's second TLS record
		}{{"plaintext", true, 0, false}, {"TLS", false, 0, false}, {"TLS torn record", false, 3, false},
			{"TLS second record", false, 0, true}, {"TLS second record torn", false, 3, true}} {
			t.Run(path.name+"/"+c.name, func(t *testing.T) {
				var writes atomic.Int32
				v := newValve(func([]byte) bool { return !c.second || writes.Add(1) == 2 })
				v.keep = c.keep
				payload := []byte("cut before it went")
				if c.second {
					payload = bytes.Repeat([]byte{0xAB}, 40<<10) // three records
				}
				sendTr := New(testLogger(t))
				sendTr.wrapRaw = v.on(path.stream(streams))
				src, dst := newVM(t, testLayout), newVM(t, testLayout)
				send, recv := openPairWith(t, sendTr, src, dst, cfg(freeAddr(t), streams, "none"), c.plain)
				ctx := ctxT(t)
				v.armed.Store(true)
				mctx, mcancel := context.WithTimeout(ctx, 200*time.Millisecond)
				err := path.send(send, mctx, transport.Message{Kind: 1, Payload: payload})
				mcancel()
				select {
				case <-v.held:
				default:
					t.Fatal("the call's write never reached the socket")
				}
				if err == nil || !strings.Contains(err.Error(), "context deadline exceeded") {
					t.Fatalf("the call cut before any byte went: %v; want its context's end", err)
				}
				next := path.send(send, ctx, transport.Message{Kind: 2, Payload: []byte("after the cut")})
				if c.plain {
					if next != nil {
						t.Fatalf("plaintext: the call after the cut: %v; want the session going on", next)
					}
					if m, err := path.recv(recv, ctx); err != nil || m.Kind != 2 {
						t.Fatalf("the destination's message after the cut: kind %d, %v; want kind 2", m.Kind, err)
					}
					return
				}
				_, ended := send.RecvMessage(ctx)
				_, heard := recv.RecvMessage(ctx)
				t.Logf("the call: %v\nthe next call: %v\nthe session: %v\nthe destination: %v", err, next, ended, heard)
				for what, err := range map[string]error{"the next call": next, "the session": ended} {
					if err == nil || errors.Is(err, transport.ErrClosed) || !strings.Contains(err.Error(), "context deadline exceeded") ||
						!strings.Contains(err.Error(), "TLS") || !strings.Contains(err.Error(), "counts none of a record cut half-way") {
						t.Errorf("%s ended with %v; want the first call's context and TLS's rules named, not ErrClosed", what, err)
					}
				}
				if heard == nil || !strings.Contains(heard.Error(), "aborted") || !strings.Contains(heard.Error(), "context deadline exceeded") {
					t.Errorf("the destination's session ended with %v; want the source's ABORT naming its call's context", heard)
				}
			})
		}
	}
}

// TestCutWriteSaysWhy: a write cut inside its frame by this side
// fails the session with an error that says what cut it, not that the
// peer closed the session: its call's context, or the session's own end
// (the wind-down's deadline on a write held behind a peer that stopped
// reading), whose reason it then returns. Before, the first said "send
// message: write ...: i/o timeout" (urgent: "send urgent: ...") without
// naming the context, and the second "stream 0: connection lost (send
// message: write ...: i/o timeout): transport session closed by the
// peer", of class transport.ErrClosed, which the destination's engine
// reads as "the source ended first".
func TestCutWriteSaysWhy(t *testing.T) {
	const streams = 2
	payload := bytes.Repeat([]byte{0xCD}, 64)
	cutOpen := func(t *testing.T, path cutPath) (send, recv *Transport, v *valve) {
		v = newValve(func(b []byte) bool { return bytes.Contains(b, payload) })
		v.keep = len(payload) / 2 // in plaintext: the header and half the payload go out
		v.armed.Store(true)
		sendTr := New(testLogger(t))
		sendTr.wrapRaw = v.on(path.stream(streams))
		src, dst := newVM(t, testLayout), newVM(t, testLayout)
		send, recv = openPairWith(t, sendTr, src, dst, cfg(freeAddr(t), streams, "none"), true)
		return send, recv, v
	}
	for _, path := range cutPaths {
		t.Run(path.name+"/by its context", func(t *testing.T) {
			send, recv, _ := cutOpen(t, path)
			ctx := ctxT(t)
			mctx, mcancel := context.WithTimeout(ctx, 200*time.Millisecond)
			defer mcancel()
			err := path.send(send, mctx, transport.Message{Kind: 1, Payload: payload})
			_, ended := send.RecvMessage(ctx)
			for what, err := range map[string]error{"the call": err, "the session": ended} {
				t.Logf("%s: %v", what, err)
				if err == nil || errors.Is(err, transport.ErrClosed) || strings.Contains(err.Error(), "closed by the peer") ||
					!strings.Contains(err.Error(), "context ended (context deadline exceeded)") {
					t.Errorf("%s ended with %v; want the call's context named, not ErrClosed", what, err)
				}
			}
			if _, heard := recv.RecvMessage(ctx); heard == nil || !strings.Contains(heard.Error(), "aborted") ||
				!strings.Contains(heard.Error(), "context deadline exceeded") {
				t.Errorf("the destination's session ended with %v; want the source's ABORT naming its call's context", heard)
			}
		})
		t.Run(path.name+"/as the session ended", func(t *testing.T) {
			send, _, v := cutOpen(t, path)
			ctx := ctxT(t)
			errc := make(chan error, 1)
			go func() { errc <- path.send(send, ctx, transport.Message{Kind: 1, Payload: payload}) }()
			select {
			case <-v.held:
			case <-ctx.Done():
				t.Fatal("the call's write never reached the socket")
			}
			why := errors.New("a fault of this side's")
			send.openSession().fail(why, wire.CodeFailed) // its wind-down's deadline cuts the held write
			var err error
			select {
			case err = <-errc:
			case <-ctx.Done():
				t.Fatal("the held call did not return after the session failed")
			}
			_, ended := send.RecvMessage(ctx)
			if ended != why {
				t.Fatalf("the session ended with %v; want %v", ended, why)
			}
			if err != why {
				t.Errorf("the call cut as the session ended: %v; want the session's error (%v)", err, why)
			}
		})
	}
}

// TestAbortBoundedAfterCutWrite: a SendMessage held behind a peer that
// stopped reading, whose context ends after the session's wind-down set
// its deadline (and so clears it: writeCtx), leaves the wind-down's
// ABORT on that stream bounded all the same (writeLast sets the
// deadline again once it holds the stream). Before, the ABORT went out
// under no deadline on a stream that took no bytes, and the failing
// call waited for ever.
func TestAbortBoundedAfterCutWrite(t *testing.T) {
	v := newValve(func([]byte) bool { return true })
	v.stuck = true // the peer reads nothing more on stream 0
	sendTr := New(testLogger(t))
	sendTr.wrapRaw = v.on(0)
	src, dst := newVM(t, testLayout), newVM(t, testLayout)
	send, _ := openPairWith(t, sendTr, src, dst, cfg(freeAddr(t), 2, "none"), true)
	ctx := ctxT(t)
	v.armed.Store(true)
	mctx, mcancel := context.WithCancel(ctx)
	defer mcancel()
	sent := make(chan error, 1)
	go func() { sent <- send.SendMessage(mctx, transport.Message{Kind: 1, Payload: []byte("held")}) }()
	select {
	case <-v.held:
	case <-ctx.Done():
		t.Fatal("SendMessage's write never reached the socket")
	}
	why := errors.New("a fault of this side's")
	failed := make(chan struct{})
	go func() { send.openSession().fail(why, wire.CodeFailed); close(failed) }()
	if err := v.waitDeadline(ctx); err != nil {
		t.Fatal("the wind-down set no deadline on stream 0")
	}
	mcancel() // the held write is cut by its context now, clearing the wind-down's deadline
	select {
	case <-failed:
	case <-time.After(10 * time.Second):
		v.SetWriteDeadline(time.Unix(1, 0)) // let the test end
		t.Fatal("the session's failure still waited for its ABORT on a stream that takes no bytes after 10 s")
	}
	if err := <-sent; err == nil {
		t.Error("the held SendMessage returned no error")
	}
}

// TestEndedContextSendsNothing: a SendMessage or SendUrgent whose
// context had already ended when it took the stream returns that end
// and writes nothing, so the session goes on over TLS too. The engine
// calls so routinely (a request server that stopPostcopy's cancel
// reaches between a request read and its answer, a cancelled answer
// over a plugin's RPC). Before, the call wrote under a deadline its
// context's end set at once (context.AfterFunc, racing the write), and
// over TLS, when the deadline won, the session failed ("the call's
// context ended (context canceled) with 0 of a frame's ... bytes
// written"): crypto/tls refuses every write after one a deadline cut.
func TestEndedContextSendsNothing(t *testing.T) {
	const tries = 200
	for _, path := range cutPaths {
		t.Run(path.name, func(t *testing.T) {
			src, dst := newVM(t, testLayout), newVM(t, testLayout)
			send, recv := openPairPlain(t, src, dst, cfg(freeAddr(t), 2, "none"), false)
			ctx := ctxT(t)
			ended, cancel := context.WithCancel(ctx)
			cancel()
			for i := range tries {
				err := path.send(send, ended, transport.Message{Kind: 1, Payload: []byte("never sent")})
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("try %d: a call with an ended context: %v; want context.Canceled", i, err)
				}
			}
			if err := path.send(send, ctx, transport.Message{Kind: 2, Payload: []byte("after")}); err != nil {
				t.Fatalf("a call after %d with an ended context: %v; want the session going on", tries, err)
			}
			if m, err := path.recv(recv, ctx); err != nil || m.Kind != 2 {
				t.Fatalf("the destination's first message: kind %d, %v; want kind 2 (nothing of the ended calls)", m.Kind, err)
			}
		})
	}
}

// TestHeldStreamLeavesAbortOnOthers: a stream whose write lock a
// writer holds through the session's failure (a peer that stopped
// reading it) costs the ABORT that stream alone: it goes on the others
// all the same, each under the wind-down's bound. Before, the ABORTs
// were written one stream after another under one deadline: the first
// stream's wait for its lock took all of it, and the writes on the
// others then failed at once, so the destination read their end
// ("the peer closed the connection"), not the reason.
func TestHeldStreamLeavesAbortOnOthers(t *testing.T) {
	src, dst := newVM(t, testLayout), newVM(t, testLayout)
	send, recv := openPairPlain(t, src, dst, cfg(freeAddr(t), 2, "none"), true)
	ctx := ctxT(t)
	s := send.openSession()
	s.streams[0].wlock <- struct{}{} // a writer holds stream 0
	why := errors.New("a fault of this side's")
	failed := make(chan struct{})
	go func() { s.fail(why, wire.CodeFailed); close(failed) }()
	_, heard := recv.RecvMessage(ctx)
	s.streams[0].unlock()
	<-failed
	if heard == nil || !strings.Contains(heard.Error(), "aborted") || !strings.Contains(heard.Error(), why.Error()) {
		t.Errorf("the destination's session ended with %v; want the source's ABORT naming %q", heard, why)
	}
}

// TestCloseDuringFailureKeepsAbort: a Close that comes while the
// session's failure still writes its ABORT (here held on stream 0,
// whose write lock a writer holds) waits for that wind-down before it
// half-closes the streams, so the destination reads the reason on the
// others, not their end. The engine closes as soon as a call returned
// the session's error, which it does once the session ended, before its
// ABORT went. Before, Close's own wind-down half-closed every stream
// at once: the destination read "the peer closed the connection", and
// the ABORT behind it failed on the half-closed sockets.
func TestCloseDuringFailureKeepsAbort(t *testing.T) {
	src, dst := newVM(t, testLayout), newVM(t, testLayout)
	send, recv := openPairPlain(t, src, dst, cfg(freeAddr(t), 2, "none"), true)
	ctx := ctxT(t)
	s := send.openSession()
	s.streams[0].wlock <- struct{}{} // a writer holds stream 0
	why := errors.New("a fault of this side's")
	failed := make(chan struct{})
	go func() { s.fail(why, wire.CodeFailed); close(failed) }()
	select {
	case <-s.Done():
	case <-ctx.Done():
		t.Fatal("the session did not end")
	}
	closed := make(chan error, 1)
	go func() { closed <- send.Close() }()
	_, heard := recv.RecvMessage(ctx)
	s.streams[0].unlock()
	<-failed
	if err := <-closed; err != nil {
		t.Errorf("Close: %v", err)
	}
	if heard == nil || !strings.Contains(heard.Error(), "aborted") || !strings.Contains(heard.Error(), why.Error()) {
		t.Errorf("the destination's session ended with %v; want the source's ABORT naming %q", heard, why)
	}
}
