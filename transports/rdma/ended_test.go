package rdma_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/transports/rdma"
)

// TestDrivingCallSeesEnd: a SendPages that waits for room in the queue
// polls the endpoint itself (it drives it) and must return the
// session's error once the session ended, though its writes neither
// complete nor fail: the destination aborted (here at a lying PROGRESS,
// TestLyingSourceCounts) and stopped polling, but its endpoint stays
// open until its Close, so the source's provider reports nothing (tcp,
// net), or its writes complete (sockets, whose own thread takes them).
// SendPages of 128 MiB in one run (at most 64 writes of 1 MiB in
// flight) is held the first time it polls while it waits
// (SetDriveWaitHook: nothing polls the endpoint meanwhile) until the
// source read the destination's ABORT. Before, the driving wait took a
// poll for progress and never looked at the session's end: on tcp,
// SendPages returned when its context did, 30 s later; on sockets,
// with no error, once every write had completed.
func TestDrivingCallSeesEnd(t *testing.T) {
	for _, p := range providers(t) {
		t.Run(p, func(t *testing.T) {
			const size = 128 << 20
			var hold atomic.Bool
			held := make(chan struct{}, 1)
			release := make(chan struct{})
			unhold := sync.OnceFunc(func() { hold.Store(false); close(release) })
			send := rdma.New(nil)
			send.SetDriveWaitHook(func() {
				if hold.Load() {
					select {
					case held <- struct{}{}:
					default:
					}
					<-release
				}
			})
			s := open(t, p, 0, size, send)
			defer unhold()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			hold.Store(true)
			sent := make(chan error, 1)
			var returned time.Time
			go func() {
				err := s.send.SendPages(ctx, []transport.PageRun{{First: 0, Count: size / 4096, Kind: transport.KindData}})
				returned = time.Now()
				sent <- err
			}()
			<-held // SendPages waits for room, held
			if err := s.send.WriteControl(ctx, rdma.ProgressFrame(1, 1<<40)); err != nil {
				t.Fatal(err)
			}
			if _, err := s.send.RecvMessage(ctx); err == nil || ctx.Err() != nil {
				t.Fatalf("the source's session: %v; want it ended by the destination's ABORT", err)
			}
			released := time.Now()
			unhold()
			err := <-sent
			t.Logf("SendPages returned %v after the polls went on: %v", returned.Sub(released).Round(time.Millisecond), err)
			if err == nil || errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
				t.Fatalf("SendPages on a session the destination aborted: %v (its context: %v); want the session's error", err, ctx.Err())
			}
		})
	}
}
