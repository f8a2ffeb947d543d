//go:build linux

package tcp

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/wire"
)

// urgentValved is a source transport whose urgent stream (stream 1 of
// a session of one bulk stream) goes through the valve it returns,
// which, armed, holds the first write after letting keep bytes of it
// through.
func urgentValved(t *testing.T, keep int) (*Transport, *valve) {
	v := newValve(func([]byte) bool { return true })
	v.keep = keep
	send := New(testLogger(t))
	send.wrapRaw = v.on(1)
	return send, v
}

// breakUrgent arms v and sends on the urgent stream under a context
// that ends 200 ms later, while v holds the write: the cut write breaks
// the stream and fails the session. The test ends if SendUrgent
// returned no error.
func breakUrgent(ctx context.Context, t *testing.T, send *Transport, v *valve) {
	t.Helper()
	v.armed.Store(true)
	mctx, mcancel := context.WithTimeout(ctx, 200*time.Millisecond)
	err := send.SendUrgent(mctx, transport.Message{Kind: 1, Payload: []byte("cut before it went")})
	mcancel()
	if err == nil {
		t.Fatal("SendUrgent cut by its context returned no error")
	}
}

// wantBulkAbort: the next frame on bulk, the fake destination's bulk
// stream, within 10 s, is the source's ABORT.
func wantBulkAbort(t *testing.T, bulk fakeEnd) {
	t.Helper()
	bulk.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if f, err := bulk.dec.Next(); err != nil || f.Type != wire.TypeAbort {
		t.Fatalf("the bulk stream carried %v, %v; want the source's ABORT", f.Type, err)
	}
}

// TestBrokenStreamClosedOnFailure: a stream a cut write broke (over
// TLS, the urgent stream: SendUrgent's context ended while its write
// waited for the socket) is closed once the session failed, before
// Close: the peer's reader of it meets its end, whether the peer ended
// its session on the ABORT (and so its end of the stream the ABORT came
// on) or said nothing at all. Before, the broken stream stayed open
// until Close: its descriptor was held, and the peer's read of it
// waited out its own bound ("no end of the broken stream").
func TestBrokenStreamClosedOnFailure(t *testing.T) {
	for _, c := range []struct {
		name     string
		peerEnds bool
	}{{"the peer ends on the ABORT", true}, {"the peer says nothing", false}} {
		t.Run(c.name, func(t *testing.T) {
			send, v := urgentValved(t, 0)
			bulk, urgent := acceptSource(t, send, newVM(t, testLayout))
			breakUrgent(ctxT(t), t, send, v)
			wantBulkAbort(t, bulk)
			if c.peerEnds {
				bulk.raw.CloseWrite()
			}
			urgent.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err := io.Copy(io.Discard, urgent.conn)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("no end of the broken stream within 10 s of the session's failure, before Close: %v", err)
			}
			if err != nil && !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("reading the broken stream: %v; want its end", err)
			}
			if send.openSession() == nil {
				t.Fatal("the source's session was closed; the test wants it failed, not closed")
			}
		})
	}
}

// TestBrokenStreamsClosedWhenNoAbortWent: when the ABORT goes on no
// stream (here every stream is broken), the wind-down closes the broken
// streams at once, their descriptors too: there is no reason for their
// end to race. Before, it only half-closed them, and their descriptors
// stayed open until Close.
func TestBrokenStreamsClosedWhenNoAbortWent(t *testing.T) {
	send := New(testLogger(t))
	bulk, urgent := acceptSource(t, send, newVM(t, testLayout))
	s := send.openSession()
	for _, st := range s.all() {
		st.broken.Store(true)
	}
	s.fail(errors.New("a fault of this side's"), wire.CodeFailed)
	for i, st := range s.all() {
		if err := st.raw.SetReadDeadline(time.Time{}); !errors.Is(err, net.ErrClosed) {
			t.Errorf("stream %d: the source's socket after the failure, before Close: %v; want it closed", i, err)
		}
	}
	for i, e := range []fakeEnd{bulk, urgent} {
		e.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.Copy(io.Discard, e.conn); err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("stream %d: the peer's read: %v; want the stream's end", i, err)
		}
	}
}

// TestCloseLeavesBrokenStreamToPeer: the engine closes as soon as a
// call returned the session's error (TestCloseDuringFailureKeepsAbort).
// A Close that comes while a stream the failure broke waits for the
// peer to hear the ABORT on another (closeWhenHeard) leaves it to that
// wait: a destination still reading towards the ABORT (here its reader
// of stream 0 waits for its lane with a page batch the ABORT follows)
// ends with the ABORT's reason, of class transport.ErrClosed, not the
// broken stream's end. Before, Close's wind-down closed the broken
// stream at once, and the destination ended with "stream 1: the peer
// closed the connection" while the ABORT waited behind the batch, or,
// when the cut had torn a TLS record ("torn record"), with "stream 1:
// transport protocol violation: truncated frame: input ends inside the
// frame header", of class transport.ErrProtocol: a source that broke
// the format, which it had not.
func TestCloseLeavesBrokenStreamToPeer(t *testing.T) {
	for _, c := range []struct {
		name string
		keep int
	}{{"nothing went", 0}, {"torn record", 3}} {
		t.Run(c.name, func(t *testing.T) { closeLeavesBrokenStream(t, c.keep) })
	}
}

// closeLeavesBrokenStream is TestCloseLeavesBrokenStreamToPeer with
// keep bytes of the cut write gone out.
func closeLeavesBrokenStream(t *testing.T, keep int) {
	sendTr, v := urgentValved(t, keep)
	src, dst := newVM(t, testLayout), newVM(t, testLayout)
	send, recv := openPairWith(t, sendTr, src, dst, cfg(freeAddr(t), 1, "none"), false)
	ctx := ctxT(t)
	r := recv.openSession()
	lane := &r.lanes[0]
	lane.Lock() // the destination's reader of stream 0 stops at the batch
	held := true
	defer func() {
		if held {
			lane.Unlock()
		}
	}()
	if err := send.SendPages(ctx, []transport.PageRun{{First: 0, Count: 1, Kind: transport.KindData}}); err != nil {
		t.Fatal(err)
	}
	for r.stats.wire.Load() == 0 { // the reader took the batch: the ABORT will follow it
		select {
		case <-ctx.Done():
			t.Fatal("the destination never read the batch")
		case <-time.After(time.Millisecond):
		}
	}
	breakUrgent(ctx, t, send, v)
	v.mu.Lock()
	bound := v.deadline // the failure's wind-down's (windDown set it on every stream)
	v.mu.Unlock()
	closed := make(chan error, 1)
	go func() { closed <- send.Close() }()
	// The destination is slow by half the wind-down's bound: it reads on
	// once it ended (it cannot read the ABORT first: its reader is held)
	// or once half the bound is over, whichever comes first.
	slow := time.NewTimer(time.Until(bound.Add(-goodbyeTimeout / 2)))
	defer slow.Stop()
	select {
	case <-r.Done():
	case <-slow.C:
	}
	lane.Unlock()
	held = false
	_, heard := recv.RecvMessage(ctx)
	if heard == nil || !strings.Contains(heard.Error(), "aborted") || !strings.Contains(heard.Error(), "context deadline exceeded") ||
		!errors.Is(heard, transport.ErrClosed) || errors.Is(heard, transport.ErrProtocol) {
		t.Errorf("the destination's session ended with %v (ErrClosed %v, ErrProtocol %v); want the source's ABORT naming its call's context, "+
			"of class ErrClosed", heard, errors.Is(heard, transport.ErrClosed), errors.Is(heard, transport.ErrProtocol))
	}
	if err := <-closed; err != nil {
		t.Errorf("Close: %v", err)
	}
}

// TestPeerAbortEndsBrokenStreamWait: a peer whose session ended on its
// own (it failed as this side did) says so with its ABORT instead of
// ending its streams, and this side's readers stop at that ABORT: it
// counts as the peer's end, as an end of stream does, so the stream
// this side's failure broke is closed then (closeWhenHeard), not only
// at the wind-down's bound, and a Close does not wait for that bound.
// Before, only a reader meeting the end of a stream noted it ("the
// source never noted its peer's end").
func TestPeerAbortEndsBrokenStreamWait(t *testing.T) {
	send, v := urgentValved(t, 0)
	bulk, urgent := acceptSource(t, send, newVM(t, testLayout))
	s := send.openSession()
	breakUrgent(ctxT(t), t, send, v)
	wantBulkAbort(t, bulk)
	if _, err := bulk.conn.Write(wire.AppendAbort(nil, wire.CodeFailed, "the destination failed too")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.peerEnded:
	case <-time.After(10 * time.Second):
		t.Fatal("the source never noted its peer's end, whose ABORT it read")
	}
	urgent.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, urgent.conn); err != nil && !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("reading the broken stream: %v; want its end", err)
	}
}
