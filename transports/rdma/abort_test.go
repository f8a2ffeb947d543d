package rdma_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/wire"
	"github.com/ferryvm/ferry/transports/rdma"
)

// TestChannelReadFails: a side whose read of one of its channels fails
// (FailChannelRead: the socket's read deadline passes, as a broken
// socket's reader sees it, the write side whole) ends its session with
// that failure and tells the peer by an ABORT of CodeFailed, so the
// peer's session fails at once with the code and the reason, not with
// the channels' end of stream (or, had they stayed open, its engine's
// stall watch). Each side, each channel, on one provider (the channels
// are TCP whatever the fabric). Before, such a side sent no ABORT: the
// peer's session ended with "the peer closed the control channel".
func TestChannelReadFails(t *testing.T) {
	p := providers(t)[0]
	for _, side := range []string{"source", "destination"} {
		for _, ch := range []string{"control", "urgent"} {
			t.Run(side+"/"+ch, func(t *testing.T) {
				s := open(t, p, 0, 1<<20, nil)
				failing, peer := s.send, s.recv
				if side == "destination" {
					failing, peer = s.recv, s.send
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				failing.FailChannelRead(ch == "urgent")
				lost := ch + " channel lost"
				if _, err := failing.RecvMessage(ctx); err == nil || !strings.Contains(err.Error(), lost) {
					t.Fatalf("the %s's session ended with %v; want %q", side, err, lost)
				}
				want := fmt.Sprintf("the peer aborted the session (%v: %s", wire.CodeFailed, lost)
				if _, err := peer.RecvMessage(ctx); err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("its peer's session ended with %v; want %q", err, want)
				}
			})
		}
	}
}

// TestRepostFails: a destination that cannot post a bulk receive buffer
// again after taking a MARK or COMMIT in it (a fault of its own, not of
// what the source sent; FailRepost injects it) ends the session with
// an ABORT of CodeFailed, so the source's session fails with "peer
// failed" and the reason, not "protocol violation" nor the channels'
// end of stream. The bulk path's twin of TestUrgentRepostFails.
func TestRepostFails(t *testing.T) {
	s := open(t, providers(t)[0], 0, 1<<20, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s.recv.FailRepost(errors.New("the provider refused the buffer"))
	fillRandom(s.src[:4096], 3)
	err := s.send.SendPages(ctx, []transport.PageRun{{First: 0, Count: 1, Kind: transport.KindData}})
	if err == nil {
		err = s.send.Flush(ctx)
	}
	if err == nil {
		t.Fatal("the batch was acknowledged although the destination failed to post its receive buffer again")
	}
	if _, err := s.recv.RecvMessage(ctx); err == nil || !strings.Contains(err.Error(), "post receive: the provider refused the buffer") {
		t.Errorf("the destination's session ended with %v; want its failed re-post", err)
	}
	want := fmt.Sprintf("the peer aborted the session (%v: post receive: the provider refused the buffer", wire.CodeFailed)
	if _, err := s.send.RecvMessage(ctx); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("the source's session ended with %v; want %q", err, want)
	}
}

// TestAbortBoundedAfterCutWrite: a session that fails while a call's
// write holds its control channel (a peer that stopped reading, the
// socket's buffers full) tells the peer and winds down within
// goodbyeTimeout's bound, also when that call's context ends meanwhile
// and its write returns with nothing written (writeOn then clears the
// deadline its context set, so that the channel stays usable). Before,
// that clearing also took away the deadline fail had set: fail's
// ABORT, waiting for the channel behind the call, then went on a
// channel that takes no bytes with no deadline and waited for ever,
// and so did Close, joining the reader that called fail.
func TestAbortBoundedAfterCutWrite(t *testing.T) {
	p := providers(t)[0]
	var armed atomic.Bool
	v := newValve(func([]byte) bool { return armed.Load() }) // the next control write: SendMessage's
	send := rdma.New(nil)
	send.SetControlWrap(v.wrap)
	s := open(t, p, 0, 1<<20, send)
	defer v.open() // whatever happens, nothing stays held past the test
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	mctx, mcancel := context.WithCancel(ctx)
	defer mcancel()
	armed.Store(true)
	errc := make(chan error, 1)
	go func() { errc <- s.send.SendMessage(mctx, transport.Message{Kind: 1, Payload: []byte("held")}) }()
	select {
	case <-v.held:
	case <-ctx.Done():
		t.Fatal("SendMessage's write never reached the control channel")
	}
	// The session fails (its urgent reader's read fails): fail bounds
	// the held write with a deadline and waits for the channel.
	s.send.FailChannelRead(true)
	if err := v.waitDeadline(ctx); err != nil {
		t.Fatal("fail set no write deadline on the control channel")
	}
	mcancel() // the held call's context ends before fail's deadline
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("SendMessage: %v; want its context's end", err)
		}
	case <-ctx.Done():
		t.Fatal("SendMessage did not return once its context ended")
	}

	closed := make(chan error, 1)
	go func() { closed <- s.send.Close() }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Error("the source's Close still waits 10 s after its session failed: its ABORT waits on a channel that takes no bytes, with no deadline")
		v.open()
		<-closed
	}
	if _, err := s.recv.RecvMessage(ctx); err == nil {
		t.Error("the destination received a message; want its session ended")
	}
}

// TestControlWriteStopsMidFrame: a control write that fails half-way
// through a frame (its context ended while the peer did not read)
// fails the session with CodeFailed, told by an ABORT on the urgent
// channel only: nothing more goes on the control channel, even once it
// takes bytes again, where the peer would read it as the rest of the
// cut frame (a message whose tail is the ABORT's bytes, or a protocol
// error of its own), and that
// channel is not half-closed before close, so that the peer reads the
// ABORT, not the cut frame's end of stream. Before, the write ended the
// session with no ABORT (code 0): the destination read 'the peer
// closed the urgent channel' or 'control channel lost'; with
// CodeFailed and nothing else, it took the cut message with the ABORT
// in it as whole.
func TestControlWriteStopsMidFrame(t *testing.T) {
	p := providers(t)[0]
	payload := bytes.Repeat([]byte{0xAB}, 64)
	v := newValve(func(b []byte) bool { return bytes.Equal(b, payload) })
	v.keep = len(payload) / 2 // the header and half the payload go out
	v.reopen = true           // and the channel takes bytes again once the write was cut
	send := rdma.New(nil)
	send.SetControlWrap(v.wrap)
	s := open(t, p, 0, 1<<20, send)
	defer v.open()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	mctx, mcancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer mcancel()
	err := s.send.SendMessage(mctx, transport.Message{Kind: 1, Payload: payload})
	if err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("SendMessage cut half-way: %v; want the control channel's failure", err)
	}
	const lost = "control channel"
	if _, err := s.send.RecvMessage(ctx); err == nil || !strings.Contains(err.Error(), lost) {
		t.Fatalf("the source's session ended with %v; want its %s's failure", err, lost)
	}
	want := fmt.Sprintf("the peer aborted the session (%v: %s", wire.CodeFailed, lost)
	m, err := s.recv.RecvMessage(ctx)
	if err == nil {
		t.Fatalf("the destination received a message of %d bytes (% x); want its session aborted", len(m.Payload), m.Payload)
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("the destination's session ended with %v; want %q", err, want)
	}
}
