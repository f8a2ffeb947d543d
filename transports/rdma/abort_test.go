package rdma_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/wire"
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
