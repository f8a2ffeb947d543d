package rdma_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

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
