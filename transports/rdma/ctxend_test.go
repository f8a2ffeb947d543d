package rdma_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/transports/rdma"
)

// Calls whose context ends half-way, and what the session is after
// them: the transport contract lets the caller go on (framework/
// transport's Transport: every call that blocks honours its context;
// the gRPC server lets a call wait for an abandoned one), as tcp and
// loopback do.

// pages is run first+count of data.
func pages(first, count uint64) []transport.PageRun {
	return []transport.PageRun{{First: first, Count: count, Kind: transport.KindData}}
}

// TestMarkNotPostedLeavesNoTrace: a SendPages whose MARK waits for
// room in the bulk queue until its context ends (HoldBulkRoom, taken
// as the MARK is about to post) fails with that context's end, and the
// session goes on: the next calls each post their MARK, the one that
// takes the unposted MARK's buffer again too, and a Flush commits all.
// Before, the unposted MARK left its buffer marked busy and the count
// of MARKs posted one ahead: the call whose MARK needed that buffer
// (MaxMarks calls later) waited until its own context ended.
func TestMarkNotPostedLeavesNoTrace(t *testing.T) {
	for _, p := range providers(t) {
		t.Run(p, func(t *testing.T) {
			send := rdma.New(nil)
			var armed atomic.Bool
			var release func()
			send.SetPostHook(func(mark bool) { // on the SendPages' goroutine
				if mark && armed.CompareAndSwap(true, false) {
					release = send.HoldBulkRoom()
				}
			})
			s := open(t, p, 0, 16<<20, send)
			if m := s.send.CompletionMode(); m != "send-after-write" {
				t.Skipf("batches are committed by %s: no MARKs", m)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			fillRandom(s.src, 8)
			armed.Store(true)
			short, stop := context.WithTimeout(ctx, 200*time.Millisecond)
			err := s.send.SendPages(short, pages(0, 64))
			stop()
			if release == nil {
				t.Fatal("the SendPages posted no MARK")
			}
			release()
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("SendPages whose MARK found no room: %v; want its context's deadline", err)
			}
			calls := uint64(rdma.MaxMarks + 1) // the last MARK's buffer was the unposted one's before
			for i := uint64(1); i <= calls; i++ {
				c, stop := context.WithTimeout(ctx, 10*time.Second)
				err := s.send.SendPages(c, pages(i*64, 64))
				stop()
				if err != nil {
					t.Fatalf("SendPages %d of %d after the one whose MARK was not posted: %v", i, calls, err)
				}
			}
			if err := s.send.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			if n := (calls + 1) * 64 * 4096; !bytes.Equal(s.dst[:n], s.src[:n]) {
				t.Error("the destination's pages differ from the source's after the Flush")
			}
		})
	}
}

// TestFlushAfterItsContextEnded: a Flush whose context ends while it
// waits for the ACK of its COMMIT (the destination's ACK held) fails
// with that end; the next Flush, or the next SendPages and then a
// Flush, waits for that ACK instead of sending the COMMIT again, and
// the session goes on, as tcp's does (its SendPages and Flush wait for
// an unfinished Flush first). Before, the next Flush posted the same
// COMMIT again and the next SendPages named its runs in the committed
// batch: the destination refused either as a protocol violation and
// aborted the session. And ("no room") a Flush whose COMMIT waits for
// room in the bulk queue until its context ends (HoldBulkRoom) leaves
// nothing behind: the next Flush posts the COMMIT. Before, the COMMIT
// stayed in flight for good and the next Flush waited for it until its
// own context ended.
func TestFlushAfterItsContextEnded(t *testing.T) {
	for _, p := range providers(t) {
		for _, next := range []string{"Flush", "SendPages", "no room"} {
			t.Run(p+"/"+next, func(t *testing.T) {
				acks := newValve(isAck)
				if next == "no room" {
					acks = newValve(func([]byte) bool { return false })
				}
				send, recv := rdma.New(nil), rdma.New(nil)
				recv.SetControlWrap(acks.wrap)
				var armed atomic.Bool
				var release func()
				send.SetPostHook(func(mark bool) { // on the Flush's goroutine
					if !mark && armed.CompareAndSwap(true, false) {
						release = send.HoldBulkRoom()
					}
				})
				s := openWith(t, p, 0, 16<<20, send, recv)
				t.Cleanup(acks.open) // before the pair closes
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				fillRandom(s.src, 9)
				if err := s.send.SendPages(ctx, pages(0, 64)); err != nil {
					t.Fatal(err)
				}
				armed.Store(next == "no room")
				short, stop := context.WithTimeout(ctx, 300*time.Millisecond)
				err := s.send.Flush(short)
				stop()
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("Flush whose ACK is held or whose COMMIT finds no room: %v; want its context's deadline", err)
				}
				if next == "no room" {
					if release == nil {
						t.Fatal("the Flush posted no COMMIT")
					}
					release()
				} else {
					select {
					case <-acks.held: // the COMMIT arrived: the destination acknowledged it
					case <-ctx.Done():
						t.Fatal("the destination never acknowledged the COMMIT")
					}
					acks.open()
				}
				done := uint64(64)
				if next == "SendPages" {
					if err := s.send.SendPages(ctx, pages(64, 64)); err != nil {
						t.Fatalf("SendPages after the Flush that ended: %v", err)
					}
					done += 64
				}
				fctx, stop := context.WithTimeout(ctx, 10*time.Second)
				err = s.send.Flush(fctx)
				stop()
				if err != nil {
					t.Fatalf("Flush after the one that ended: %v", err)
				}
				if err := s.send.SendPages(ctx, pages(done, 64)); err != nil {
					t.Fatalf("the batch after: SendPages: %v", err)
				}
				if err := s.send.Flush(ctx); err != nil {
					t.Fatalf("the batch after: Flush: %v", err)
				}
				if n := (done + 64) * 4096; !bytes.Equal(s.dst[:n], s.src[:n]) {
					t.Error("the destination's pages differ from the source's after the Flushes")
				}
				if err := s.send.SendMessage(ctx, transport.Message{Kind: 1, Payload: []byte("still up")}); err != nil {
					t.Fatal(err)
				}
				if m, err := s.recv.RecvMessage(ctx); err != nil || m.Kind != 1 {
					t.Fatalf("the destination's message: kind %d, %v", m.Kind, err)
				}
			})
		}
	}
}

// TestCutWriteSaysWhy: a control write cut inside its frame by this
// side fails the session with an error that says what cut it, not
// that the peer closed the session: its call's context (a past write
// deadline, "i/o timeout"), or the session's own end (fail's deadline
// on a write held behind a peer that stopped reading), whose reason it
// then returns. Before, both said "control channel: i/o timeout:
// transport session closed by the peer", and the first matched
// transport.ErrClosed, the class of a peer that closed the session.
func TestCutWriteSaysWhy(t *testing.T) {
	p := providers(t)[0]
	payload := bytes.Repeat([]byte{0xCD}, 64)
	cutOpen := func(t *testing.T) (*session, *valve) {
		v := newValve(func(b []byte) bool { return bytes.Equal(b, payload) })
		v.keep = len(payload) / 2 // the header and half the payload go out
		send := rdma.New(nil)
		send.SetControlWrap(v.wrap)
		s := open(t, p, 0, 1<<20, send)
		t.Cleanup(v.open)
		return s, v
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	t.Run("by its context", func(t *testing.T) {
		s, _ := cutOpen(t)
		mctx, mcancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer mcancel()
		err := s.send.SendMessage(mctx, transport.Message{Kind: 1, Payload: payload})
		_, ended := s.send.RecvMessage(ctx)
		for what, err := range map[string]error{"SendMessage": err, "the session": ended} {
			t.Logf("%s: %v", what, err)
			if err == nil || errors.Is(err, transport.ErrClosed) || strings.Contains(err.Error(), "closed by the peer") ||
				!strings.Contains(err.Error(), "context deadline exceeded") {
				t.Errorf("%s ended with %v; want the call's context named, not ErrClosed", what, err)
			}
		}
	})
	t.Run("as the session ended", func(t *testing.T) {
		s, v := cutOpen(t)
		errc := make(chan error, 1)
		go func() { errc <- s.send.SendMessage(ctx, transport.Message{Kind: 1, Payload: payload}) }()
		select {
		case <-v.held:
		case <-ctx.Done():
			t.Fatal("SendMessage's write never reached the control channel")
		}
		s.send.FailChannelRead(true) // the session fails; fail's deadline cuts the held write
		err := <-errc
		_, ended := s.send.RecvMessage(ctx)
		if ended == nil || !strings.Contains(ended.Error(), "urgent channel lost") {
			t.Fatalf("the session ended with %v; want its urgent channel lost", ended)
		}
		if err == nil || err.Error() != ended.Error() {
			t.Errorf("SendMessage cut as the session ended: %v; want the session's error (%v)", err, ended)
		}
	})
}

// TestCutTLSWriteSaysWhy: a SendMessage whose context ends while its
// write waits for the socket, before any of its bytes went (a valve
// under the channel's TLS, or under nothing in plaintext), returns its
// context's end; then either the session goes on (plaintext: the next
// message arrives) or, when it cannot, its error says what cut it. Over
// TLS it cannot: crypto/tls refuses every write after one a deadline
// cut, whatever went. Before, a TLS session went on as if nothing had
// happened, and the next write failed it with "control channel: the
// write was cut on this side with 0 of a frame's 34 bytes written: i/o
// timeout", naming neither the context nor TLS, while no deadline of
// that write's had passed. A cut in the frame's second record (the
// header's record went whole) fails it the same way; until 2026-12-08
// its text named the context but not TLS's rules ("TLS second record").
func TestCutTLSWriteSaysWhy(t *testing.T) {
	p := providers(t)[0]
	for _, c := range []struct {
		name      string
		plaintext bool
		second    bool // cut the frame's second TLS record (its payload's), the header's went whole
	}{{"plaintext", true, false}, {"TLS", false, false}, {"TLS second record", false, true}} {
		plaintext := c.plaintext
		t.Run(c.name, func(t *testing.T) {
			var armed atomic.Bool
			var writes atomic.Int32
			v := newValve(func([]byte) bool {
				if c.second {
					return armed.Load() && writes.Add(1) == 2
				}
				return armed.CompareAndSwap(true, false)
			})
			v.reopen = true // the link takes bytes again once the cut write gave up
			send := rdma.New(nil)
			send.SetRawControlWrap(v.wrap)
			s := openCreds(t, p, 0, 1<<20, send, nil, plaintext)
			t.Cleanup(v.open)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			armed.Store(true)
			mctx, mcancel := context.WithTimeout(ctx, 200*time.Millisecond)
			err := s.send.SendMessage(mctx, transport.Message{Kind: 1, Payload: []byte("cut before it went")})
			mcancel()
			select {
			case <-v.held:
			default:
				t.Fatal("the SendMessage's write never reached the socket")
			}
			if err == nil || !strings.Contains(err.Error(), "context deadline exceeded") {
				t.Fatalf("SendMessage cut before any byte went: %v; want its context's end", err)
			}
			next := s.send.SendMessage(ctx, transport.Message{Kind: 2, Payload: []byte("after the cut")})
			if next == nil {
				if m, err := s.recv.RecvMessage(ctx); err != nil || m.Kind != 2 {
					t.Fatalf("the destination's message after the cut: kind %d, %v; want kind 2", m.Kind, err)
				}
				if !plaintext {
					t.Error("a TLS channel whose write a deadline cut carried the next frame (crypto/tls refuses that)")
				}
				return
			}
			_, ended := s.send.RecvMessage(ctx)
			t.Logf("next SendMessage: %v; the session: %v", next, ended)
			for what, err := range map[string]error{"the next SendMessage": next, "the session": ended} {
				if errors.Is(err, transport.ErrClosed) || !strings.Contains(err.Error(), "context deadline exceeded") ||
					!strings.Contains(err.Error(), "counts none of a record cut half-way") {
					t.Errorf("%s ended with %v; want the first call's context and TLS's rules named, not ErrClosed", what, err)
				}
			}
		})
	}
}
